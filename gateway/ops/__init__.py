"""Probes and scrapes: health, readiness, Prometheus metrics, the API document."""
