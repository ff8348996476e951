"""meterseal: secure end-to-end processing of smart-meter data."""

__version__ = "0.1.0"
