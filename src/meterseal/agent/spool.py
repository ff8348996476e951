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
freshness window are not kept (the head-end would refuse them anyway), nor those dated more
than a day ahead of the agent's clock: no head-end takes them (its clocks' allowed skew is
minutes), and kept, they would be resent, when their time came, as readings of intervals a
meter's wrong clock named. Day files that far ahead (a meter's clock that once ran far
ahead) are pruned: they would otherwise stay until they aged out, years later. `save` counts
what it left out.
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

KEEP_SECONDS = FreshnessPolicy().max_age_seconds  # the longest keep: the head-end's window


@dataclass(frozen=True, slots=True)
class Spooled:
    """One sealed packet as spooled: its reading's interval start and the packet."""

    timestamp: int
    packet: bytes


DAY = 86_400
AHEAD_SECONDS = DAY  # how far ahead of the agent's clock a packet is still kept


@dataclass(frozen=True, slots=True)
class Saved:
    """What a `save` left out of the spool: packets past the window, older than keep_seconds
    (`stale`) or dated more than AHEAD_SECONDS ahead (`future`), and day files pruned as
    dated that far ahead (`future_days`; old days leaving the spool are not counted)."""

    stale: int = 0
    future: int = 0
    future_days: int = 0


class ReadingSpool:
    """A directory per meter, a file per UTC day of intervals (METER_ID/DAY.cbor: counter ->
    [interval start, packet]): a pass rewrites only the days of its window, and old days go
    whole."""

    def __init__(self, directory: Path, keep_seconds: int = KEEP_SECONDS) -> None:
        if not 0 < keep_seconds <= KEEP_SECONDS:  # longer: kept for a head-end that refuses
            raise ConfigurationError(
                f"the spool keeps packets 1 to {KEEP_SECONDS} seconds (the head-end's freshness "
                f"window), not {keep_seconds}"
            )
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

    def save(self, meter_id: str, packets: Mapping[int, Spooled], now: int) -> Saved:
        """Keep `packets` for `meter_id`, each day's file written durably (whole, synced,
        renamed, the directory synced) before this returns; drop the days older than
        `keep_seconds` or dated more than AHEAD_SECONDS ahead of `now`; what was left out."""
        oldest, latest = now - self.keep_seconds, now + AHEAD_SECONDS
        days: dict[int, dict[int, list[Any]]] = {}
        stale = future = 0
        for counter, spooled in packets.items():
            day = spooled.timestamp - spooled.timestamp % DAY
            if day + DAY <= oldest:
                stale += 1
            elif spooled.timestamp > latest:
                future += 1
            else:
                days.setdefault(day, {})[counter] = [spooled.timestamp, spooled.packet]
        folder = self._meter(meter_id)
        for day, kept in days.items():
            write_durably(folder / f"{day}.cbor", cose.dumps(kept))
        future_days = 0
        for old in folder.glob("*.cbor") if folder.is_dir() else ():
            if not old.stem.isdigit():
                continue
            if int(old.stem) > latest:
                future_days += 1
                old.unlink()
            elif int(old.stem) + DAY <= oldest:
                old.unlink()
        return Saved(stale, future, future_days)


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
