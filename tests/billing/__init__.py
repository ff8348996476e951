"""Tests for meterseal.billing."""
