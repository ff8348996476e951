"""Fraud detection: rank customers by theft likelihood (a trusted job; see docs/fraud.md)."""
