"""The matching engine: which subscriptions a publication header satisfies, fast.

Each subscription is indexed under one of its equality (or `in`) predicates, preferring the
most selective attribute kinds; a publication then looks up its own value of each indexed
attribute and checks only the candidates found there, plus the few subscriptions that have
no equality predicate at all. Subscriptions are kept per privacy level: one admitted to a
level never sees another level's publications. Pure and single-threaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.publication import ATTRS, POSITION, Header
from meterseal.dissemination.subscription import Op, Predicate, Subscription

# Which equality to index a subscription under, most selective kinds first.
INDEX_PREFERENCE: Final = ("customer", "seq", "start", "region", "publisher", "type")
Check = Callable[[Sequence[Any]], bool]


def _getter(attribute: str) -> Callable[[Sequence[Any]], Any]:
    position = POSITION.get(attribute)
    if position is not None and position != ATTRS and attribute != "version":
        return lambda fields: fields[position]
    return lambda fields: fields[ATTRS].get(attribute)


def _compile(predicate: Predicate) -> Check:
    """A check over a header's field array (bool/int confusion is impossible: validated)."""
    get, holds = _getter(predicate.attribute), predicate.holds
    return lambda fields: holds(get(fields))


def _index_choice(predicates: Sequence[Predicate]) -> Predicate | None:
    """The equality predicate to index under, or None (then the subscription is scanned)."""
    equalities = [p for p in predicates if p.op in (Op.EQ, Op.IN) and p.attribute != "level"]
    if not equalities:
        return None
    rank = {name: i for i, name in enumerate(INDEX_PREFERENCE)}
    return min(equalities, key=lambda p: (rank.get(p.attribute, len(rank)), p.op is Op.IN))


@dataclass(frozen=True, slots=True)
class _Entry:
    ident: int
    checks: tuple[Check, ...]  # the predicates not answered by the index lookup

    def accepts(self, fields: Sequence[Any]) -> bool:
        # A plain loop: all() over a generator costs a frame per call on the hot path.
        for check in self.checks:  # noqa: SIM110
            if not check(fields):
                return False
        return True


class _LevelIndex:
    """The subscriptions of one privacy level."""

    def __init__(self) -> None:
        # attribute -> (getter, value -> entries)
        self.tables: dict[str, tuple[Callable[[Sequence[Any]], Any], dict[Any, list[_Entry]]]] = {}
        self.scan: list[_Entry] = []

    def add(self, entry: _Entry, key: Predicate | None) -> None:
        if key is None:
            self.scan.append(entry)
            return
        table = self.tables.setdefault(key.attribute, (_getter(key.attribute), {}))[1]
        values = key.value if isinstance(key.value, frozenset) else (key.value,)
        for value in values:
            # (type, value) keys: an int 1 and the bytes b"\x01" are different values.
            table.setdefault((type(value), value), []).append(entry)

    def remove(self, ident: int) -> None:
        self.scan = [e for e in self.scan if e.ident != ident]
        for _, table in self.tables.values():
            for value, entries in list(table.items()):
                kept = [e for e in entries if e.ident != ident]
                if kept:
                    table[value] = kept
                else:
                    del table[value]

    def match(self, fields: Sequence[Any], out: list[int]) -> None:
        for get, table in self.tables.values():
            value = get(fields)
            if value is None:
                continue
            entries = table.get((type(value), value))
            if entries:
                for entry in entries:
                    if entry.accepts(fields):
                        out.append(entry.ident)
        for entry in self.scan:
            if entry.accepts(fields):
                out.append(entry.ident)


class MatchingEngine:
    """Subscriptions by id, each bound to one privacy level; `match` gives the ids hit."""

    def __init__(self) -> None:
        self._levels = {int(level): _LevelIndex() for level in PrivacyLevel}
        self._subscriptions: dict[int, tuple[PrivacyLevel, Subscription]] = {}

    def __len__(self) -> int:
        return len(self._subscriptions)

    def add(self, ident: int, level: PrivacyLevel, subscription: Subscription) -> None:
        """Register `subscription` under `ident` for publications of `level`."""
        if ident in self._subscriptions:
            raise ValueError(f"subscription {ident} exists")
        key = _index_choice(subscription.predicates)
        rest = tuple(_compile(p) for p in subscription.predicates if p is not key)
        self._levels[int(level)].add(_Entry(ident, rest), key)
        self._subscriptions[ident] = (level, subscription)

    def remove(self, ident: int) -> None:
        """Forget subscription `ident` (no error if unknown)."""
        found = self._subscriptions.pop(ident, None)
        if found is not None:
            self._levels[int(found[0])].remove(ident)

    def match(self, fields: Sequence[Any]) -> list[int]:
        """Ids of the subscriptions that a validated header array satisfies."""
        out: list[int] = []
        self._levels[fields[1]].match(fields, out)
        return out

    def subscriptions(self) -> Iterable[tuple[int, PrivacyLevel, Subscription]]:
        """Every registered subscription."""
        return ((i, lv, s) for i, (lv, s) in self._subscriptions.items())


class NaiveMatcher:
    """The reference: every subscription checked against every header, by attribute name."""

    def __init__(self) -> None:
        self._subscriptions: dict[int, tuple[PrivacyLevel, Subscription]] = {}

    def add(self, ident: int, level: PrivacyLevel, subscription: Subscription) -> None:
        """Register a subscription."""
        self._subscriptions[ident] = (level, subscription)

    def remove(self, ident: int) -> None:
        """Forget a subscription."""
        self._subscriptions.pop(ident, None)

    def match(self, header: Header) -> list[int]:
        """Ids of the subscriptions `header` satisfies."""
        attributes = header.attributes()
        return [
            ident
            for ident, (level, subscription) in self._subscriptions.items()
            if level == header.level and subscription.matches(attributes)
        ]
