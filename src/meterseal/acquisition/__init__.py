"""Acquisition: untrusted receivers and the trusted stages (open, verify, freshness, anonymize)."""
