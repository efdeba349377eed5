"""The customer's pages (tracking, order lookup, preferences, unsubscribe, link errors):
their strings in every locale, the shop's branding, dates in the customer's own patterns."""
