"""People and machines: accounts and roles, password tokens, scoped API keys, the access log."""
