"""The deployments of the same stages: the service skeleton, the bus, services and trusted mode."""
