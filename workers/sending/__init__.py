"""The send job: one notification, at most once, through the configured transports."""
