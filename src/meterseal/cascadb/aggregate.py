"""GROUP BY: rows into groups by key; COUNT, SUM, AVG, MIN, MAX, TOTAL as SQLite computes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from meterseal.cascadb import values as sv
from meterseal.cascadb.expr import Aggregate, Ctx, Fn, Row


class _State:
    """The running value of one aggregate over one group."""

    def __init__(self, spec: Aggregate) -> None:
        self.spec = spec
        self.count = 0
        self.total: Any = 0
        self.integral = True
        self.best: Any = None
        self.parts: list[str] = []
        self.seen: set[Any] | None = set() if spec.distinct else None

    def add(self, row: Row, ctx: Ctx) -> None:
        """Fold one row of the group in."""
        if self.spec.arg is None:  # count(*)
            self.count += 1
            return
        value = self.spec.arg(row, ctx)
        if value is None:
            return
        if self.seen is not None:
            key = sv.hash_key(value)
            if key in self.seen:
                return
            self.seen.add(key)
        self.count += 1
        func = self.spec.func
        if func in ("sum", "avg", "total"):
            number = sv.to_number(value)
            if not isinstance(number, int):
                self.integral = False
            if isinstance(self.total, Decimal) and isinstance(number, float):
                self.total = float(self.total)
            if isinstance(number, Decimal) and isinstance(self.total, float):
                number = float(number)
            self.total += number
        elif func in ("min", "max"):
            if (
                self.best is None
                or (sv.compare(value, self.best) or 0) * (1 if func == "max" else -1) > 0
            ):
                self.best = value
        elif func == "group_concat":
            self.parts.append(sv.text_of(value))

    def result(self) -> Any:
        """The aggregate's value for the group."""
        func = self.spec.func
        if func == "count":
            return self.count
        if func == "sum":
            return None if self.count == 0 else self.total
        if func == "total":
            return float(self.total)
        if func == "avg":
            return None if self.count == 0 else float(self.total) / self.count
        if func in ("min", "max"):
            return self.best
        return ",".join(self.parts) if self.parts else None


def grouped(
    rows: Iterable[Row],
    keys: list[Fn],
    specs: list[Aggregate],
    width: int,
    ctx: Ctx,
) -> Iterator[Row]:
    """One row per group: the group's first row (width slots) followed by its aggregates.

    Without GROUP BY keys, one row even when there are no rows (then its columns are NULL).
    """
    groups: dict[tuple[Any, ...], tuple[Row, list[_State]]] = {}
    for row in rows:
        key = tuple(sv.hash_key(k(row, ctx)) for k in keys)
        entry = groups.get(key)
        if entry is None:
            entry = (row, [_State(s) for s in specs])
            groups[key] = entry
        for state in entry[1]:
            state.add(row, ctx)
    if not groups and not keys:
        groups[()] = ((None,) * width, [_State(s) for s in specs])
    for first, states in groups.values():
        yield (*first, *(s.result() for s in states))
