"""Model monitoring: what training saw, what the model sees now, and which bundle it is compared with."""
