"""HTTP handlers, one module per resource. No SQL here: they call service.store."""
