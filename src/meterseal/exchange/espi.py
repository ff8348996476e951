"""Green Button (NAESB REQ.21 ESPI) Atom feeds in (sans-IO): usage points and interval readings.

An ESPI feed is Atom: each `entry` holds one resource (`UsagePoint`, `MeterReading`,
`ReadingType`, `IntervalBlock`, …) and its `link`s say how they hang together: a MeterReading
sits under its UsagePoint's href and names its ReadingType in a `related` link; an
IntervalBlock sits under its MeterReading. A reading's energy is `value` *
10^`powerOfTenMultiplier` in the ReadingType's `uom`; meterseal imports electricity delivered
to the customer (`uom` 72, Wh; `flowDirection` 1; interval data, `accumulationBehaviour` 4)
and refuses other readings with a reason each. The XML is parsed by defusedxml: a document
with a DTD, entities or external references is refused, never expanded or fetched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import defusedxml.ElementTree as SafeTree
from defusedxml import DefusedXmlException

from meterseal.billing.unsigned import UnsignedReading
from meterseal.exchange.csv_readings import (
    MAX_INTERVAL,
    ImportFormatError,
    ParsedRow,
    RejectedRow,
    RowError,
)

ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"
UOM_WH = 72
FORWARD = 1  # flowDirection: delivered to the customer
DELTA_DATA = 4  # accumulationBehaviour: each reading is the interval's own energy
ELECTRICITY = 0  # ServiceCategory kind
# ESPI QualityOfReading codes meterseal folds into its three qualities (others: measured).
ESTIMATED = frozenset({8, 9, 12, 15})  # reference day, linear interpolation, projected, weather
SUBSTITUTED = frozenset({7, 11, 13})  # manually edited, derived, mixed
FIELDS = ["usage_point", "start", "duration", "value", "quality"]


@dataclass(frozen=True)
class ReadingKind:
    """The parts of a ReadingType meterseal uses."""

    uom: int
    power_of_ten: int
    flow: int
    accumulation: int

    def refusal(self) -> str | None:
        """Why readings of this type are not imported; None if they are."""
        if self.uom != UOM_WH:
            return f"ReadingType uom {self.uom} is not 72 (Wh)"
        if self.flow != FORWARD:
            return f"ReadingType flowDirection {self.flow} is not 1 (delivered)"
        if self.accumulation != DELTA_DATA:
            return f"ReadingType accumulationBehaviour {self.accumulation} is not 4 (interval data)"
        return None


@dataclass(frozen=True)
class EspiReading:
    """One IntervalReading with where it came from (usage point) and its ReadingType."""

    ordinal: int  # 1-based, in document order
    usage_point: str
    start: int
    duration: int
    value: int
    quality: int
    kind: ReadingKind | None  # None: the MeterReading names no ReadingType in the feed


@dataclass
class EspiFeed:
    """What a feed holds: its usage points (id -> title) and interval readings."""

    usage_points: dict[str, str] = field(default_factory=dict)
    readings: list[EspiReading] = field(default_factory=list)
    refused_points: dict[str, str] = field(default_factory=dict)  # usage point id -> reason


def _text(element: Any, path: str) -> str | None:
    found = element.find(path)
    return None if found is None or found.text is None else found.text.strip()


def _int(element: Any, path: str, default: int | None = None) -> int:
    text = _text(element, path)
    if text is None:
        if default is None:
            raise ImportFormatError(f"ESPI {element.tag.removeprefix(ESPI)} has no {path}")
        return default
    try:
        return int(text)
    except ValueError:
        raise ImportFormatError(f"ESPI {path} {text!r} is not an integer") from None


def _links(entry: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for link in entry.findall(f"{ATOM}link"):
        out.setdefault(link.get("rel", ""), []).append(link.get("href", "").rstrip("/"))
    return out


def _under(href: str, marker: str) -> str:
    """The part of `href` before `/marker` (a resource's parent)."""
    head, found, _ = href.rpartition(f"/{marker}")
    return head if found else ""


def parse_espi(data: bytes) -> EspiFeed:
    """Parse a Green Button feed; ImportFormatError if it is not one meterseal can read."""
    try:
        root = SafeTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ImportFormatError(f"ESPI file refused: {exc} (no DTDs or entities)") from None
    except SafeTree.ParseError as exc:
        raise ImportFormatError(f"not XML: {exc}") from None
    entries = [root] if root.tag == f"{ATOM}entry" else root.findall(f"{ATOM}entry")
    if root.tag not in (f"{ATOM}feed", f"{ATOM}entry"):
        raise ImportFormatError(f"not an Atom feed (root element {root.tag})")
    feed = EspiFeed()
    kinds: dict[str, ReadingKind] = {}
    meter_readings: dict[str, tuple[str, str | None]] = {}  # href -> (usage point, type href)
    blocks: list[tuple[str, Any]] = []  # (meter reading href, IntervalBlock)
    for entry in entries:
        content = entry.find(f"{ATOM}content")
        if content is None or len(content) == 0:
            continue
        links = _links(entry)
        self_href = (links.get("self") or [""])[0]
        up = (links.get("up") or [""])[0]
        for resource in content:
            name = resource.tag.removeprefix(ESPI)
            if name == "UsagePoint":
                point = self_href.rpartition("/")[2] or f"usage-point-{len(feed.usage_points) + 1}"
                feed.usage_points[point] = _text(entry, f"{ATOM}title") or ""
                kind = _int(resource, f"{ESPI}ServiceCategory/{ESPI}kind", ELECTRICITY)
                if kind != ELECTRICITY:
                    feed.refused_points[point] = f"ServiceCategory kind {kind} is not electricity"
            elif name == "ReadingType":
                kinds[self_href] = ReadingKind(
                    _int(resource, f"{ESPI}uom"),
                    _int(resource, f"{ESPI}powerOfTenMultiplier", 0),
                    _int(resource, f"{ESPI}flowDirection", FORWARD),
                    _int(resource, f"{ESPI}accumulationBehaviour", DELTA_DATA),
                )
            elif name == "MeterReading":
                related = [h for h in links.get("related", []) if "/ReadingType/" in h]
                point = _under(self_href or up, "MeterReading").rpartition("/")[2]
                meter_readings[self_href] = (point, related[0] if related else None)
            elif name == "IntervalBlock":
                blocks.append((_under(self_href or up, "IntervalBlock"), resource))
    if not blocks:
        raise ImportFormatError("the ESPI feed holds no IntervalBlock (no readings)")
    for owner, block in blocks:
        point, type_href = meter_readings.get(owner, (_under(owner, "MeterReading"), None))
        point = point.rpartition("/")[2]
        reading_kind = _kind_of(type_href, kinds)
        for reading in block.findall(f"{ESPI}IntervalReading"):
            feed.readings.append(
                EspiReading(
                    len(feed.readings) + 1,
                    point,
                    _int(reading, f"{ESPI}timePeriod/{ESPI}start"),
                    _int(reading, f"{ESPI}timePeriod/{ESPI}duration"),
                    _int(reading, f"{ESPI}value"),
                    _int(reading, f"{ESPI}ReadingQuality/{ESPI}quality", 0),
                    reading_kind,
                )
            )
    return feed


def _kind_of(type_href: str | None, kinds: Mapping[str, ReadingKind]) -> ReadingKind | None:
    if type_href is not None and type_href in kinds:
        return kinds[type_href]
    if type_href is None and len(kinds) == 1:  # one ReadingType in the feed: it is this one
        return next(iter(kinds.values()))
    return None


def quality_of(code: int) -> str:
    """meterseal's quality for an ESPI QualityOfReading code."""
    if code in ESTIMATED:
        return "estimated"
    return "substituted" if code in SUBSTITUTED else "measured"


def energy_wh(value: int, power_of_ten: int, *, round_wh: bool = False) -> int:
    """Whole Wh of `value` * 10^power; finer than 1 Wh is refused unless rounded (half even)."""
    if power_of_ten >= 0:
        return int(value * 10**power_of_ten)
    scale: int = 10**-power_of_ten
    whole, rest = divmod(value, scale)
    if rest and not round_wh:
        raise RowError(f"{value}e{power_of_ten} Wh is finer than 1 Wh: give --round-wh")
    up = 2 * rest > scale or (2 * rest == scale and whole % 2 == 1)  # half to even
    return whole + int(up)


def readings_of(
    feed: EspiFeed, meters: Mapping[str, str], *, round_wh: bool = False
) -> Iterator[ParsedRow | RejectedRow]:
    """Each reading of the feed for the meter its usage point maps to, or refused with a reason."""
    for r in feed.readings:
        fields = [r.usage_point, str(r.start), str(r.duration), str(r.value), str(r.quality)]
        try:
            yield ParsedRow(r.ordinal, _reading(r, feed, meters, round_wh), None, fields)
        except RowError as exc:
            yield RejectedRow(r.ordinal, str(exc), fields)


def _reading(
    r: EspiReading, feed: EspiFeed, meters: Mapping[str, str], round_wh: bool
) -> UnsignedReading:
    if r.usage_point in feed.refused_points:
        raise RowError(f"usage point {r.usage_point}: {feed.refused_points[r.usage_point]}")
    meter_id = meters.get(r.usage_point)
    if meter_id is None:
        raise RowError(f"usage point {r.usage_point} is mapped to no meter (--meter POINT=METER)")
    if r.kind is None:
        raise RowError("its MeterReading names no ReadingType in the feed")
    refusal = r.kind.refusal()
    if refusal is not None:
        raise RowError(refusal)
    if not 0 < r.duration <= MAX_INTERVAL:
        raise RowError(f"the interval is {r.duration} s: it must be 1..{MAX_INTERVAL} s")
    if r.start <= 0:
        raise RowError("start must be after 1970-01-01")
    if r.value < 0:
        raise RowError(f"value {r.value} is negative")
    wh = energy_wh(r.value, r.kind.power_of_ten, round_wh=round_wh)
    return UnsignedReading(meter_id, r.start, r.duration, wh, quality_of(r.quality))
