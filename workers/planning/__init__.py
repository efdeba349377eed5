"""Which notifications a shipment's state calls for, and when they may go out."""
