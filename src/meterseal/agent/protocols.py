"""The meter protocols the agent speaks, by name: each a factory of connected drivers."""

from __future__ import annotations

from meterseal.agent.driver import DriverFactory, MeterDriver, MeterTarget
from meterseal.errors import ConfigurationError

PROTOCOLS = ("nbr14522",)


def driver_factory(protocol: str, *, tz: str = "UTC", attempts: int = 3) -> DriverFactory:
    """Opens drivers of `protocol`; `tz` is the meters' clock zone where the protocol has one."""
    if protocol == "nbr14522":
        from meterseal.agent.nbr_driver import open_nbr

        async def open_driver(target: MeterTarget) -> MeterDriver:
            return await open_nbr(target, tz=tz, attempts=attempts)

        return open_driver
    raise ConfigurationError(f"unknown meter protocol {protocol!r}; choose one of {PROTOCOLS}")
