"""Signed commands from the head-end to meters (connect, disconnect, clock, read) and their log."""
