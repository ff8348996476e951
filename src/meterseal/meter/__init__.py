"""The meter side: identities (provisioning) and, later, the fleet simulator."""
