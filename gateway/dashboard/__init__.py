"""The dashboard page: the service and the model at a glance, drawn on the server."""
