"""Parcelcast arq workers: follow-up work handed over by the outbox relay."""
