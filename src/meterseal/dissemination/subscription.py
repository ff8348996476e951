"""Subscriptions: conjunctions of predicates over header attributes, as text or CBOR.

Text syntax (one line): `pred and pred and …`, where a predicate is
`NAME OP LITERAL` (OP one of = != < <= > >=), `NAME in (LITERAL, …)` or
`NAME prefix LITERAL`. Literals are integers, "quoted text", bare words (text) or
h'hex' (bytes). For `level`, the words high, moderate and low stand for the levels.
The empty text subscribes to everything the subscriber was admitted to.
CBOR form: an array of [name, op, value] triples (`in` takes an array of values).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from meterseal.dissemination.errors import MalformedSubscription
from meterseal.dissemination.levels import PrivacyLevel

AttrValue = int | str | bytes
MAX_PREDICATES: Final = 16
MAX_IN_VALUES: Final = 256
MAX_LITERAL: Final = 64
NAME_PATTERN: Final = re.compile(r"[a-z_][a-z0-9_]{0,63}")


class Op(enum.StrEnum):
    """A predicate's comparison."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    PREFIX = "prefix"


def _comparable(a: object, b: object) -> bool:
    return type(a) is type(b)


_COMPARE: dict[Op, Callable[[Any, Any], bool]] = {
    Op.LT: lambda a, b: a < b,
    Op.LE: lambda a, b: a <= b,
    Op.GT: lambda a, b: a > b,
    Op.GE: lambda a, b: a >= b,
}


@dataclass(frozen=True, slots=True)
class Predicate:
    """`attribute op value`; a value of another type than the attribute's never matches."""

    attribute: str
    op: Op
    value: AttrValue | frozenset[AttrValue]

    def holds(self, actual: AttrValue | None) -> bool:
        """Whether an attribute with value `actual` (None: absent) satisfies the predicate."""
        if actual is None:
            return False
        if self.op is Op.IN:
            assert isinstance(self.value, frozenset)
            return any(_comparable(actual, v) and actual == v for v in self.value)
        if not _comparable(actual, self.value):
            return False
        if self.op is Op.EQ:
            return actual == self.value
        if self.op is Op.NE:
            return actual != self.value
        if self.op is Op.PREFIX:
            assert isinstance(actual, str | bytes)
            assert isinstance(self.value, str | bytes)
            return actual.startswith(self.value)  # type: ignore[arg-type]
        return _COMPARE[self.op](actual, self.value)

    def to_cbor(self) -> list[Any]:
        """[name, op, value] (an `in` value as a sorted array)."""
        if isinstance(self.value, frozenset):
            return [self.attribute, self.op.value, sorted(self.value, key=_sort_key)]
        return [self.attribute, self.op.value, self.value]

    def text(self) -> str:
        """The predicate in the text syntax."""
        if isinstance(self.value, frozenset):
            inner = ", ".join(_literal(v) for v in sorted(self.value, key=_sort_key))
            return f"{self.attribute} in ({inner})"
        return f"{self.attribute} {self.op.value} {_literal(self.value)}"


def _sort_key(value: AttrValue) -> tuple[str, Any]:
    return (type(value).__name__, value)


def _literal(value: AttrValue) -> str:
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A conjunction of predicates (none: everything at the admitted level)."""

    predicates: tuple[Predicate, ...] = ()

    def matches(self, attributes: Mapping[str, AttrValue]) -> bool:
        """Whether a header with these attributes satisfies every predicate."""
        return all(p.holds(attributes.get(p.attribute)) for p in self.predicates)

    def to_cbor(self) -> bytes:
        """The CBOR form."""
        encoded: bytes = cbor2.dumps([p.to_cbor() for p in self.predicates], canonical=True)
        return encoded

    def text(self) -> str:
        """The text form (round-trips through `parse`)."""
        return " and ".join(p.text() for p in self.predicates)

    def admits_level(self, level: PrivacyLevel) -> bool:
        """Whether the predicates on `level` let publications of `level` through."""
        return all(p.holds(int(level)) for p in self.predicates if p.attribute == "level")


def _check_value(value: object) -> AttrValue:
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise MalformedSubscription("integer out of range")
        return value
    if isinstance(value, str | bytes):
        if len(value) > MAX_LITERAL:
            raise MalformedSubscription(f"literal longer than {MAX_LITERAL}")
        return str(value) if isinstance(value, str) else bytes(value)  # never a subclass
    raise MalformedSubscription(f"literal {value!r} is not an integer, text or bytes")


def _level_value(attribute: str, value: AttrValue) -> AttrValue:
    """Level words become the level's number, so that `level = high` means level 3."""
    if attribute == "level" and isinstance(value, str):
        try:
            return int(PrivacyLevel.named(value))
        except KeyError as exc:
            raise MalformedSubscription(f"unknown privacy level {value!r}") from exc
    return value


def make_predicate(attribute: object, op: object, value: object) -> Predicate:
    """A checked predicate; MalformedSubscription if any part is out of the grammar."""
    if type(attribute) is not str or not NAME_PATTERN.fullmatch(attribute):
        raise MalformedSubscription(f"bad attribute name {attribute!r}")
    try:
        operator = Op(op if isinstance(op, str) else "")
    except ValueError as exc:
        raise MalformedSubscription(f"unknown operator {op!r}") from exc
    if operator is Op.IN:
        if not isinstance(value, list | tuple | frozenset | set) or not value:
            raise MalformedSubscription("`in` takes a non-empty list")
        values = list(value)
        if len(values) > MAX_IN_VALUES:
            raise MalformedSubscription(f"`in` takes at most {MAX_IN_VALUES} values")
        checked = frozenset(_level_value(attribute, _check_value(v)) for v in values)
        return Predicate(attribute, operator, checked)
    checked_value = _level_value(attribute, _check_value(value))
    if operator is Op.PREFIX and isinstance(checked_value, int):
        raise MalformedSubscription("`prefix` takes text or bytes")
    return Predicate(attribute, operator, checked_value)


def make_subscription(predicates: Sequence[Predicate]) -> Subscription:
    """A subscription of at most MAX_PREDICATES predicates."""
    if len(predicates) > MAX_PREDICATES:
        raise MalformedSubscription(f"at most {MAX_PREDICATES} predicates")
    return Subscription(tuple(predicates))


def from_cbor(encoded: bytes) -> Subscription:
    """The subscription in CBOR form; MalformedSubscription on anything else."""
    if type(encoded) is not bytes or len(encoded) > 16_384:
        raise MalformedSubscription("CBOR form must be bytes of <= 16 KiB")
    try:
        items = cbor2.loads(encoded)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise MalformedSubscription("not CBOR") from exc
    if type(items) is not list:
        raise MalformedSubscription("CBOR form is an array of [name, op, value]")
    predicates = []
    for item in items:
        if type(item) is not list or len(item) != 3:
            raise MalformedSubscription("each predicate is [name, op, value]")
        predicates.append(make_predicate(*item))
    return make_subscription(predicates)


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<hex>h'(?P<hexdigits>[0-9a-fA-F]*)')
    | (?P<text>"(?P<body>(?:[^"\\]|\\.)*)")
    | (?P<int>-?[0-9]+)
    | (?P<op><=|>=|!=|==|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise MalformedSubscription(f"unexpected input at column {position + 1}")
        position = match.end()
        if match.group("hex") is not None:
            digits = match.group("hexdigits")
            if len(digits) % 2:
                raise MalformedSubscription("hex literal has an odd number of digits")
            tokens.append(("lit", bytes.fromhex(digits)))
        elif match.group("text") is not None:
            tokens.append(("lit", re.sub(r"\\(.)", r"\1", match.group("body"))))
        elif match.group("int") is not None:
            tokens.append(("lit", int(match.group("int"))))
        elif match.group("op") is not None:
            tokens.append(("op", "=" if match.group("op") == "==" else match.group("op")))
        elif match.group("punct") is not None:
            tokens.append((match.group("punct"), None))
        else:
            tokens.append(("word", match.group("word")))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.i = 0

    def next(self, what: str) -> tuple[str, Any]:
        if self.i >= len(self.tokens):
            raise MalformedSubscription(f"expected {what} at the end")
        token = self.tokens[self.i]
        self.i += 1
        return token

    def literal(self) -> AttrValue:
        kind, value = self.next("a literal")
        if kind not in ("lit", "word") or (kind == "word" and value in ("and", "in", "prefix")):
            raise MalformedSubscription(f"expected a literal, got {value or kind!r}")
        return value  # type: ignore[no-any-return]

    def predicate(self) -> Predicate:
        kind, name = self.next("an attribute name")
        if kind != "word":
            raise MalformedSubscription(f"expected an attribute name, got {name or kind!r}")
        kind, op = self.next("an operator")
        if kind == "op":
            return make_predicate(name, op, self.literal())
        if (kind, op) == ("word", "prefix"):
            return make_predicate(name, Op.PREFIX, self.literal())
        if (kind, op) == ("word", "in"):
            if self.next("'('")[0] != "(":
                raise MalformedSubscription("`in` takes a parenthesised list")
            values = [self.literal()]
            while (token := self.next("',' or ')'"))[0] == ",":
                values.append(self.literal())
            if token[0] != ")":
                raise MalformedSubscription("expected ',' or ')' in an `in` list")
            return make_predicate(name, Op.IN, values)
        raise MalformedSubscription(f"expected an operator after {name}, got {op or kind!r}")

    def subscription(self) -> Subscription:
        predicates = []
        if self.tokens:
            predicates.append(self.predicate())
            while self.i < len(self.tokens):
                if self.next("'and'") != ("word", "and"):
                    raise MalformedSubscription("predicates are joined with 'and'")
                predicates.append(self.predicate())
        return make_subscription(predicates)


def parse(text: str) -> Subscription:
    """The subscription written in the text syntax; MalformedSubscription otherwise."""
    if not isinstance(text, str) or len(text) > 16_384:
        raise MalformedSubscription("subscription text must be a string of <= 16 KiB")
    return _Parser(_tokens(text)).subscription()
