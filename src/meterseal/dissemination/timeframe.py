"""Time frames for aggregation: fixed lengths (minutes, hours, days) or calendar months (UTC)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_UNITS = {"m": 60, "h": 3600, "d": 86_400}
_PATTERN = re.compile(r"([1-9][0-9]*)(m|h|d|mo)")


@dataclass(frozen=True)
class Frame:
    """`seconds` long frames aligned on the epoch, or calendar months when `months` > 0."""

    seconds: int = 3600
    months: int = 0

    def __post_init__(self) -> None:
        if (self.months > 0) == (self.seconds > 0) or self.months < 0 or self.seconds < 0:
            raise ValueError("a frame is either some seconds or some months")

    @classmethod
    def parse(cls, text: str) -> Frame:
        """'15m', '1h', '1d' or '1mo'; ValueError otherwise."""
        match = _PATTERN.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not a time frame: {text!r} (e.g. 15m, 1h, 1d, 1mo)")
        count, unit = int(match.group(1)), match.group(2)
        return cls(0, count) if unit == "mo" else cls(count * _UNITS[unit])

    def start(self, timestamp: int) -> int:
        """The start of the frame holding `timestamp` (Unix seconds)."""
        if self.seconds:
            return timestamp - timestamp % self.seconds
        day = dt.datetime.fromtimestamp(timestamp, dt.UTC)
        index = (day.year * 12 + day.month - 1) // self.months * self.months
        return int(dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC).timestamp())

    def end(self, start: int) -> int:
        """The end (exclusive) of the frame starting at `start`."""
        if self.seconds:
            return start + self.seconds
        day = dt.datetime.fromtimestamp(start, dt.UTC)
        index = day.year * 12 + day.month - 1 + self.months
        return int(dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC).timestamp())

    def text(self) -> str:
        """The frame as parse() reads it."""
        if self.months:
            return f"{self.months}mo"
        for unit, size in (("d", 86_400), ("h", 3600)):
            if self.seconds % size == 0:
                return f"{self.seconds // size}{unit}"
        return f"{self.seconds // 60}m" if self.seconds % 60 == 0 else f"{self.seconds}s"
