"""Reproducible experiments behind `meterseal bench …`."""
