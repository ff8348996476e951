"""A sqllogictest runner: the record format of SQLite's sqllogictest, any DB-API-like backend.

Records: `statement ok|error`, `query <types> <sort> [label]` with results after `----` (one
value a line, or `N values hashing to MD5`), `hash-threshold N`, `skipif X` / `onlyif X`
before a record, `halt`. Values are printed as sqllogictest prints them (NULL, (empty), %.3f
for R, integers for I, printable text for T); rowsort/valuesort sort the printed values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

Run = Callable[[str], list[tuple[Any, ...]] | None]  # rows of a query, None for a statement
ENGINE = "sqlite"  # CascaDB answers as SQLite does: skipif/onlyif name it so


@dataclass
class Record:
    """One statement or query of a test file."""

    line: int
    kind: str  # "statement" or "query"
    sql: str
    expect_error: bool = False
    types: str = ""
    sort: str = "nosort"
    expected: list[str] = field(default_factory=list)
    hashed: tuple[int, str] | None = None
    threshold: int = 0


def records(text: str) -> Iterator[Record]:
    """The records of a test file that apply to SQLite, in order."""
    lines = text.splitlines()
    i, threshold = 0, 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "halt":
            return
        if words[0] == "hash-threshold":
            threshold = int(words[1])
            continue
        skip = False
        while words[0] in ("skipif", "onlyif"):
            skip |= (words[1] == ENGINE) == (words[0] == "skipif")
            words = lines[i].split()
            i += 1
        if words[0] == "halt":
            if skip:
                continue
            return
        start = i
        body: list[str] = []
        while i < len(lines) and lines[i].strip() and lines[i].strip() != "----":
            body.append(lines[i])
            i += 1
        record = Record(start, words[0], "\n".join(body), threshold=threshold)
        if words[0] == "statement":
            record.expect_error = words[1] == "error"
        elif words[0] == "query":
            record.types = words[1]
            record.sort = words[2] if len(words) > 2 else "nosort"
            if i < len(lines) and lines[i].strip() == "----":
                i += 1
                while i < len(lines) and lines[i].strip():
                    record.expected.append(lines[i].strip())
                    i += 1
            if len(record.expected) == 1 and " values hashing to " in record.expected[0]:
                count, _, _, _, digest = record.expected[0].split()
                record.hashed = (int(count), digest)
                record.expected = []
        else:
            raise ValueError(f"line {start}: unknown record {words[0]!r}")
        if not skip:
            yield record


def _integer(value: Any) -> int:
    if isinstance(value, int | float | Decimal):
        return int(value)
    digits = ""
    for char in str(value).strip():
        if char.isdigit() or (not digits and char in "+-"):
            digits += char
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def _real(value: Any) -> float:
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def printed(value: Any, kind: str) -> str:
    """A value as sqllogictest prints it for a column of type `kind` (I, R or T)."""
    if value is None:
        return "NULL"
    if kind == "I":
        return str(_integer(value))
    if kind == "R":
        return f"{_real(value):.3f}"
    if isinstance(value, float):
        text = f"{value:.15g}"
        text = text if any(c in text for c in ".en") else text + ".0"
    else:
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if text == "":
        return "(empty)"
    return "".join(c if " " <= c <= "~" else "@" for c in text)


def values_of(rows: Sequence[tuple[Any, ...]], record: Record) -> list[str]:
    """The printed values of a query's rows, sorted as the record asks."""
    kinds = record.types
    table = [
        [printed(v, kinds[i] if i < len(kinds) else "T") for i, v in enumerate(r)] for r in rows
    ]
    if record.sort == "rowsort":
        table.sort()
    flat = [v for row in table for v in row]
    if record.sort == "valuesort":
        flat.sort()
    return flat


@dataclass
class Outcome:
    """What running a file gave: records run, and each mismatch (line, SQL, what differed)."""

    run: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)


def run_file(path: Path, execute: Run, limit: int | None = None) -> Outcome:
    """Run the records of `path` (up to `limit`) through `execute`; collect mismatches."""
    outcome = Outcome()
    for record in records(path.read_text()):
        if limit is not None and outcome.run >= limit:
            break
        outcome.run += 1
        problem = check(record, execute)
        if problem is not None:
            outcome.failures.append((record.line, record.sql, problem))
    return outcome


def check(record: Record, execute: Run) -> str | None:
    """None when `record` behaves as the file says, else what differed."""
    try:
        rows = execute(record.sql)
    except Exception as exc:  # the file says which statements fail; anything else is a mismatch
        if record.kind == "statement" and record.expect_error:
            return None
        return f"raised {type(exc).__name__}: {exc}"
    if record.kind == "statement":
        return "succeeded, the file expects an error" if record.expect_error else None
    values = values_of(rows or [], record)
    if record.hashed is not None:
        count, digest = record.hashed
        found = hashlib.md5("".join(v + "\n" for v in values).encode()).hexdigest()
        if (len(values), found) != (count, digest):
            return f"{len(values)} values hashing to {found}, expected {count} hashing to {digest}"
        return None
    if len(values) > record.threshold > 0:
        found = hashlib.md5("".join(v + "\n" for v in values).encode()).hexdigest()
        return f"{len(values)} values hashing to {found}, expected {record.expected[:6]}"
    if values != record.expected:
        return f"got {values[:12]}, expected {record.expected[:12]}"
    return None
