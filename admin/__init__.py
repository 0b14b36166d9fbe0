"""Operator command lines: API keys and model rollout, run beside a deployment (`python -m admin.keys`)."""
