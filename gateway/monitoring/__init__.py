"""Model monitoring over HTTP: drift and calls per version, live performance, model metrics."""
