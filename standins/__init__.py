"""Local stand-ins for providers we cannot reach from here: real servers on loopback.

- `standins.twilio_server`: enough of Twilio's Messages API for the official SDK.
- `standins.smtp_server`: an aiosmtpd SMTP server with an HTTP control endpoint.

Both record what they receive, count duplicates, and can be told to fail, so tests and
the demo exercise the real senders over real sockets.
"""
