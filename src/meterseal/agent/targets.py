"""The agent's meter list: one meter a line, `METER_ID SERIAL ADDRESS` (`#` starts a comment).

`meterseal agent emulate --write-meters FILE` writes such a file; `meterseal agent run
--meters-file FILE` reads it. METER_ID is the meterseal identity the readings are sealed as
(a meter of the deployment's fleet file), SERIAL the serial number the meter answers with,
ADDRESS where its line is (HOST:PORT, or a serial device's path such as /dev/ttyUSB0).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meterseal.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class MeterLineEntry:
    """One line of a meter list."""

    meter_id: str
    serial: str
    address: str

    def line(self) -> str:
        """The entry as a line of a meter list."""
        return f"{self.meter_id} {self.serial} {self.address}"


def parse_meter_list(lines: Iterable[str]) -> list[MeterLineEntry]:
    """The entries of a meter list; ConfigurationError names a malformed line."""
    entries = []
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        address_ok = len(fields) == 3 and (":" in fields[2] or fields[2].startswith("/"))
        if not address_ok or not fields[1].isdigit():
            raise ConfigurationError(
                f"meter list line {number}: expected 'METER_ID SERIAL HOST:PORT' (or a device "
                f"path), got {raw!r}"
            )
        entries.append(MeterLineEntry(*fields))
    return entries
