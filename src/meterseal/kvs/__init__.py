"""The secure key-value store: sealed objects over replicated and erasure-coded nodes."""
