"""Tests for meterseal.transparency."""
