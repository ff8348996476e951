"""The deployments of the same stages on the runtime: the bus, services and trusted mode."""
