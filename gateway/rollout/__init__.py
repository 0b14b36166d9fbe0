"""Model rollout over HTTP: what serves, canary, promotion, rollback, shadow."""
