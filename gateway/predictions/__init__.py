"""Single predictions over HTTP: submit one observation, read its result, send its true outcome."""
