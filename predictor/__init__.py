"""Parcelcast predictor: a plain library (no web imports) for delivery-time prediction."""
