"""Model rollout: which version serves each observation, the bundles that may serve, and the changes to it."""
