"""The agent's spool: what it sealed for each meter, on disk before it is sent, resent as is.

A reading sealed twice is two different signed originals (the seal's time, a randomized
signature, the newest reading's phasor report), and the head-end keeps the first and refuses
the second as a replayed counter. So the agent keeps every packet it sealed, per meter and
counter, synced to disk before the first send: a pass over intervals it sealed before (a
rerun of the window, a pass after a crash in the middle of sending) resends the very
packets, which the head-end takes as duplicates of the signed original it holds, and seals
only the intervals it never sealed. A crash before the spool is written loses nothing
either: nothing of that pass was sent, and the meter still holds its load profile (the
agent's reads change nothing on the meter). Packets of intervals older than the head-end's
freshness window are dropped, as the head-end would refuse them anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterseal.acquisition.freshness import FreshnessPolicy
from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.errors import ConfigurationError
from meterseal.runtime.durable import write_durably

KEEP_SECONDS = FreshnessPolicy().max_age_seconds


@dataclass(frozen=True, slots=True)
class Spooled:
    """One sealed packet as spooled: its reading's interval start and the packet."""

    timestamp: int
    packet: bytes


DAY = 86_400


class ReadingSpool:
    """A directory per meter, a file per UTC day of intervals (METER_ID/DAY.cbor: counter ->
    [interval start, packet]): a pass rewrites only the days of its window, and old days go
    whole."""

    def __init__(self, directory: Path, keep_seconds: int = KEEP_SECONDS) -> None:
        self.directory = directory
        self.keep_seconds = keep_seconds

    def _meter(self, meter_id: str) -> Path:
        if not meter_id or "/" in meter_id or meter_id.startswith("."):
            raise ConfigurationError(f"meter id {meter_id!r} cannot name a spool directory")
        return self.directory / meter_id

    def load(self, meter_id: str, start: int, end: int) -> dict[int, Spooled]:
        """The packets spooled for `meter_id` on the days that [start, end) touches, by counter
        (the whole of each day: `save` writes them back with the new ones)."""
        found: dict[int, Spooled] = {}
        for day in range(start - start % DAY, end, DAY):
            found |= _read(self._meter(meter_id) / f"{day}.cbor")
        return found

    def save(self, meter_id: str, packets: Mapping[int, Spooled], now: int) -> None:
        """Keep `packets` for `meter_id`, each day's file written durably (whole, synced,
        renamed, the directory synced) before this returns; drop the days older than the
        freshness window."""
        days: dict[int, dict[int, list[Any]]] = {}
        for counter, spooled in packets.items():
            day = spooled.timestamp - spooled.timestamp % DAY
            days.setdefault(day, {})[counter] = [spooled.timestamp, spooled.packet]
        oldest = now - self.keep_seconds
        folder = self._meter(meter_id)
        for day, kept in days.items():
            if day + DAY > oldest:
                write_durably(folder / f"{day}.cbor", cose.dumps(kept))
        for old in folder.glob("*.cbor") if folder.is_dir() else ():
            if old.stem.isdigit() and int(old.stem) + DAY <= oldest:
                old.unlink()


def _read(path: Path) -> dict[int, Spooled]:
    if not path.exists():
        return {}
    try:
        items: Any = cose.loads_strict(path.read_bytes())
        if not isinstance(items, dict):
            raise CoseFormatError("a spool file is a map")
        return {
            int(counter): Spooled(int(at), cose.expect_bytes(sealed))
            for counter, (at, sealed) in items.items()
        }
    except (CoseFormatError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{path} is not an agent spool file: {exc}") from None
