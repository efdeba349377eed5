"""The HTTP layer: app factory, routes, handlers, request bodies, errors as problem+json."""
