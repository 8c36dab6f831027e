"""Request handlers, one module per area; each exposes `install(router, services)`."""
