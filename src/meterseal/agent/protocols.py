"""The meter protocols the agent speaks, by name: each a factory of connected drivers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from meterseal.agent.driver import DriverFactory, MeterDriver, MeterTarget
from meterseal.errors import ConfigurationError

if TYPE_CHECKING:
    from meterseal.agent.dlms_driver import DlmsSecrets

PROTOCOLS = ("nbr14522", "nbr14522-sealed", "dlms", "dlms-hdlc")
READER = "reader-000001"  # the agent's name on sealed links


def driver_factory(
    protocol: str,
    *,
    tz: str = "UTC",
    attempts: int = 3,
    link_keys: Path | None = None,
    passphrase: bytes | None = None,
    dlms_keys: Mapping[str, DlmsSecrets] | None = None,
) -> DriverFactory:
    """Opens drivers of `protocol`; `tz` is the meters' clock zone where the protocol has one.

    The sealed NBR 14522 reads the agent's and the meters' link keys from `link_keys`; DLMS
    takes the meters' secrets by serial number in `dlms_keys` (`agent.dlms_keys`).
    """
    if protocol in ("dlms", "dlms-hdlc"):
        from meterseal.agent.dlms_driver import dlms_factory

        return dlms_factory(dlms_keys or {}, hdlc=protocol == "dlms-hdlc")
    if protocol == "nbr14522":
        from meterseal.agent.nbr_driver import open_nbr

        async def open_driver(target: MeterTarget) -> MeterDriver:
            return await open_nbr(target, tz=tz, attempts=attempts)

        return open_driver
    if protocol == "nbr14522-sealed":
        from meterseal.agent.link_keys import read_party, read_peer
        from meterseal.agent.nbr_sealed_link import open_sealed_nbr

        if link_keys is None:
            raise ConfigurationError("the sealed NBR 14522 needs --link-keys DIRECTORY")
        me = read_party(link_keys, READER, passphrase)

        async def open_sealed(target: MeterTarget) -> MeterDriver:
            meter = read_peer(link_keys, target.serial)
            return await open_sealed_nbr(target, me, meter, tz=tz, attempts=attempts)

        return open_sealed
    raise ConfigurationError(f"unknown meter protocol {protocol!r}; choose one of {PROTOCOLS}")
