"""Parcelcast service: the HTTP API, its store and the plumbing around them."""
