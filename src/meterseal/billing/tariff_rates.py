"""The three kinds of tariff rates (flat, time-of-use, tiered blocks) and their validation."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Context, Decimal
from functools import cached_property
from typing import ClassVar

from meterseal.errors import MetersealError

MAX_PRICE = Decimal(1_000_000)
PRICE_PLACES = 12
MAX_BLOCK_KWH = Decimal(10**12)
MAX_WINDOWS = 64
MAX_BLOCKS = 16
MAX_NAME_LENGTH = 40
OTHER_LABEL = "other"
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 1440
# Unix day 0 (1970-01-01) was a Thursday: the minute table starts there so that pricing can
# index it with `unix_day % 7` directly.
_UNIX_DAY0_WEEKDAY = 3

_PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)
_WH_QUANTUM = Decimal("0.001")
# Checks run in their own context: the caller's thread-local one may round or trap differently.
_WIDE = Context(prec=60)
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00")


class TariffError(MetersealError):
    """Bad tariff data or pricing input; `field` is its dotted path, as in the TOML file."""

    def __init__(self, field: str | None, problem: str, source: str | None = None) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem
        self.source = source

    def diagnostics(self) -> str:
        """Where (file and field) and what is wrong."""
        where = f"{self.source}: " if self.source else ""
        what = f"field '{self.field}' " if self.field else ""
        return f"{where}bad tariff: {what}{self.problem}"


@contextmanager
def field_scope(prefix: str) -> Iterator[None]:
    """Re-raise a TariffError from inside with its field placed under `prefix`."""
    try:
        yield
    except TariffError as exc:
        field = f"{prefix}.{exc.field}" if exc.field else prefix
        raise TariffError(field, exc.problem, exc.source) from None


def check_price(field: str, value: object) -> Decimal:
    """`value` if it is a Decimal price: finite, 0..MAX_PRICE, at most PRICE_PLACES decimals."""
    if not isinstance(value, Decimal) or not value.is_finite() or not 0 <= value <= MAX_PRICE:
        raise TariffError(field, f"must be a Decimal from 0 to {MAX_PRICE}, got {value!r}")
    if value.quantize(_PRICE_QUANTUM, context=_WIDE) != value:
        raise TariffError(field, f"has more than {PRICE_PLACES} decimal places")
    return value


def decimal_text(value: Decimal) -> str:
    """Canonical text of a checked decimal: no exponent, no trailing zeros, "0" for zero."""
    if value == 0:
        return "0"
    return format(value.normalize(_WIDE), "f")


def canonical(value: Decimal) -> Decimal:
    """The same number in its canonical representation (so 0.30 and 0.3 print alike)."""
    return Decimal(decimal_text(value))


def minutes_of(field: str, text: object) -> int:
    """Minutes after midnight of an "HH:MM" time of day ("24:00" is the end of the day)."""
    if not isinstance(text, str) or not _HHMM.fullmatch(text):
        raise TariffError(field, f'must be "HH:MM" from 00:00 to 24:00, got {text!r}')
    return int(text[:2]) * 60 + int(text[3:])


def check_name(field: str, value: object) -> None:
    """A label printed on bills: 1..MAX_NAME_LENGTH printable characters, no outer spaces."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_NAME_LENGTH
        or not value.isprintable()
        or value != value.strip()
    ):
        raise TariffError(field, f"must be 1 to {MAX_NAME_LENGTH} printable characters")


@dataclass(frozen=True)
class FlatRate:
    """One price per kWh at all times."""

    kind: ClassVar[str] = "flat"
    price_per_kwh: Decimal

    def __post_init__(self) -> None:
        check_price("price_per_kwh", self.price_per_kwh)


@dataclass(frozen=True)
class TouWindow:
    """A named price on some weekdays (0 = Monday) from `start` to `end`, local "HH:MM"."""

    name: str
    days: frozenset[int]
    start: str
    end: str
    price_per_kwh: Decimal

    def __post_init__(self) -> None:
        check_name("name", self.name)
        if (
            not isinstance(self.days, frozenset)
            or not self.days
            or not all(type(d) is int and 0 <= d <= 6 for d in self.days)
        ):
            raise TariffError("days", "must be a non-empty set of weekdays 0 (Monday) to 6")
        if self.start_minute >= self.end_minute:
            raise TariffError("end", "must be later than start on the same day")
        check_price("price_per_kwh", self.price_per_kwh)

    @property
    def start_minute(self) -> int:
        """Start, in minutes after local midnight."""
        return minutes_of("start", self.start)

    @property
    def end_minute(self) -> int:
        """End (exclusive), in minutes after local midnight."""
        return minutes_of("end", self.end)


@dataclass(frozen=True)
class TimeOfUse:
    """Prices by local time window; an interval counts where its start falls, else `default`."""

    kind: ClassVar[str] = "time_of_use"
    windows: tuple[TouWindow, ...]
    default_price_per_kwh: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.windows, tuple) or not 0 < len(self.windows) <= MAX_WINDOWS:
            raise TariffError("windows", f"must be a tuple of 1 to {MAX_WINDOWS} windows")
        for i, window in enumerate(self.windows):
            if not isinstance(window, TouWindow):
                raise TariffError(f"windows[{i}]", "must be a TouWindow")
        check_price("default_price_per_kwh", self.default_price_per_kwh)
        self._check_names()
        self._check_overlaps()

    def _check_names(self) -> None:
        # One bill line per name, so a name must mean one price.
        prices: dict[str, Decimal] = {}
        for i, window in enumerate(self.windows):
            if window.name == OTHER_LABEL:
                raise TariffError(f"windows[{i}].name", f"{OTHER_LABEL!r} is the default's line")
            if prices.setdefault(window.name, window.price_per_kwh) != window.price_per_kwh:
                raise TariffError(f"windows[{i}].price_per_kwh", "differs from the same name's")

    def _check_overlaps(self) -> None:
        for day in range(7):
            spans = sorted(
                (w.start_minute, w.end_minute, i)
                for i, w in enumerate(self.windows)
                if day in w.days
            )
            for (_, end, i), (start, _, j) in itertools.pairwise(spans):
                if start < end:
                    problem = f"overlaps windows[{min(i, j)}] on {WEEKDAY_NAMES[day]}"
                    raise TariffError(f"windows[{max(i, j)}]", problem)

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """Bill line labels: the window names by first appearance, then "other"."""
        return (*dict.fromkeys(w.name for w in self.windows), OTHER_LABEL)

    @cached_property
    def prices(self) -> tuple[Decimal, ...]:
        """Price per kWh of each label."""
        by_name = {w.name: w.price_per_kwh for w in self.windows}
        by_name[OTHER_LABEL] = self.default_price_per_kwh
        return tuple(by_name[label] for label in self.labels)

    @cached_property
    def minute_table(self) -> bytes:
        """Label index for each minute of the week, starting on a Thursday (Unix day 0)."""
        index = {label: n for n, label in enumerate(self.labels)}
        table = bytearray([index[OTHER_LABEL]]) * (7 * MINUTES_PER_DAY)
        for position in range(7):
            weekday = (position + _UNIX_DAY0_WEEKDAY) % 7
            base = position * MINUTES_PER_DAY
            for w in self.windows:
                if weekday in w.days:
                    label = bytes([index[w.name]])
                    table[base + w.start_minute : base + w.end_minute] = label * (
                        w.end_minute - w.start_minute
                    )
        return bytes(table)


@dataclass(frozen=True)
class Block:
    """A price for the period's cumulative energy up to `up_to_kwh` (None: no upper bound)."""

    up_to_kwh: Decimal | None
    price_per_kwh: Decimal

    def __post_init__(self) -> None:
        bound = self.up_to_kwh
        if bound is not None and (
            not isinstance(bound, Decimal)
            or not bound.is_finite()
            or not 0 < bound <= MAX_BLOCK_KWH
            or bound.quantize(_WH_QUANTUM, context=_WIDE) != bound
        ):
            problem = f"must be a Decimal above 0 and at most {MAX_BLOCK_KWH}, in whole Wh"
            raise TariffError("up_to_kwh", problem)
        check_price("price_per_kwh", self.price_per_kwh)

    @property
    def up_to_wh(self) -> int | None:
        """The bound in Wh (exact: bounds are whole Wh)."""
        return None if self.up_to_kwh is None else int(self.up_to_kwh * 1000)


@dataclass(frozen=True)
class TieredBlocks:
    """Prices by block of the period's cumulative energy; the last block is unbounded."""

    kind: ClassVar[str] = "tiered"
    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, tuple) or not 0 < len(self.blocks) <= MAX_BLOCKS:
            raise TariffError("blocks", f"must be a tuple of 1 to {MAX_BLOCKS} blocks")
        previous = Decimal(0)
        for i, block in enumerate(self.blocks):
            if not isinstance(block, Block):
                raise TariffError(f"blocks[{i}]", "must be a Block")
            last = i == len(self.blocks) - 1
            if last != (block.up_to_kwh is None):
                problem = "must be absent on the last block only (it is unbounded)"
                raise TariffError(f"blocks[{i}].up_to_kwh", problem)
            if block.up_to_kwh is not None:
                if block.up_to_kwh <= previous:
                    raise TariffError(f"blocks[{i}].up_to_kwh", "must exceed the previous bound")
                previous = block.up_to_kwh

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """Bill line labels, one per block, naming its range."""
        labels = []
        lower: Decimal | None = None
        for n, block in enumerate(self.blocks, start=1):
            upper = block.up_to_kwh
            if upper is None:
                span = "all energy" if lower is None else f"above {decimal_text(lower)} kWh"
            elif lower is None:
                span = f"up to {decimal_text(upper)} kWh"
            else:
                span = f"{decimal_text(lower)} to {decimal_text(upper)} kWh"
            labels.append(f"block {n}: {span}")
            lower = upper
        return tuple(labels)


Rates = FlatRate | TimeOfUse | TieredBlocks
