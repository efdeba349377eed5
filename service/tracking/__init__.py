"""Carrier tracking data: status-code tables per carrier and their loader."""
