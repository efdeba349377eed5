"""The ETA in the running system: the champion model at run time, and training glue."""
