"""A Python client and a command line for the contraband prediction service."""

from client.api import PredictionClient, ServiceError

__all__ = ["PredictionClient", "ServiceError"]
