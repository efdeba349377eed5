"""`parcelcast demo`: a shop's month replayed through the real system, end to end."""
