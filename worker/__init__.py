"""Prediction workers and the parts the gateway shares with them: settings, schemas, storage, model bundle."""
