"""Who may call what: API key checks, the key lookups' cache and the rate limits."""
