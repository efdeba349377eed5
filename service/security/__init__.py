"""API keys, signed links and webhook signatures."""
