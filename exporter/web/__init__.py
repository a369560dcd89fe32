"""HTTP: the server, content negotiation, the routes, service discovery and the webhook listener."""
