"""The OpenAPI document of the API, and the Swagger UI page that reads it."""
