"""Tariff rates as plain data (TOML, JSON, CBOR maps): strict keys, exact decimals, TOML text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from meterseal.billing.tariff_rates import (
    WEEKDAY_NAMES,
    Block,
    FlatRate,
    Rates,
    TariffError,
    TieredBlocks,
    TimeOfUse,
    TouWindow,
    decimal_text,
    field_scope,
)

_T = TypeVar("_T")
_DECIMAL_TEXT = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
_WINDOW_KEYS = frozenset({"name", "days", "start", "end", "price_per_kwh"})
_PRICE_KEY = frozenset({"price_per_kwh"})


def path(prefix: str, key: str) -> str:
    """The dotted field path of `key` inside `prefix`."""
    return f"{prefix}.{key}" if prefix else key


def take(
    data: object, prefix: str, required: Collection[str], optional: Collection[str] = ()
) -> Mapping[str, Any]:
    """`data` as a table with all `required` keys and nothing beyond `optional`."""
    if not isinstance(data, Mapping):
        raise TariffError(prefix or None, "must be a table")
    for key in data:
        if not isinstance(key, str) or (key not in required and key not in optional):
            raise TariffError(path(prefix, str(key)), "unknown key")
    for key in required:
        if key not in data:
            raise TariffError(path(prefix, key), "is missing")
    return data


def decimal_value(field: str, value: object) -> Decimal:
    """A decimal from a string like "0.3120", an integer or an exactly parsed TOML number."""
    if isinstance(value, float):
        raise TariffError(field, 'must be a decimal string such as "0.3120", not a float')
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        return Decimal(value)
    if isinstance(value, Decimal) or (isinstance(value, int) and not isinstance(value, bool)):
        return Decimal(value)
    raise TariffError(field, f'must be a decimal string such as "0.3120", got {value!r}')


def int_value(field: str, value: object) -> int:
    """An integer (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TariffError(field, f"must be an integer, got {value!r}")
    return value


def str_value(field: str, value: object) -> str:
    """A string."""
    if not isinstance(value, str):
        raise TariffError(field, f"must be a string, got {value!r}")
    return value


def rates_to_dict(rates: Rates) -> dict[str, Any]:
    """The `rates` table of a tariff file (prices as canonical decimal strings)."""
    if isinstance(rates, FlatRate):
        return {"kind": rates.kind, "price_per_kwh": decimal_text(rates.price_per_kwh)}
    if isinstance(rates, TimeOfUse):
        return {
            "kind": rates.kind,
            "default_price_per_kwh": decimal_text(rates.default_price_per_kwh),
            "windows": [_window_to_dict(w) for w in rates.windows],
        }
    return {"kind": rates.kind, "blocks": [_block_to_dict(b) for b in rates.blocks]}


def _window_to_dict(window: TouWindow) -> dict[str, Any]:
    return {
        "name": window.name,
        "days": [WEEKDAY_NAMES[d] for d in sorted(window.days)],
        "start": window.start,
        "end": window.end,
        "price_per_kwh": decimal_text(window.price_per_kwh),
    }


def _block_to_dict(block: Block) -> dict[str, Any]:
    bound = {} if block.up_to_kwh is None else {"up_to_kwh": decimal_text(block.up_to_kwh)}
    return {**bound, "price_per_kwh": decimal_text(block.price_per_kwh)}


def rates_from_dict(data: object, prefix: str = "rates") -> Rates:
    """Rates from a `rates` table; errors name the field under `prefix`."""
    if not isinstance(data, Mapping):
        raise TariffError(prefix, "must be a table")
    kind = data.get("kind")
    with field_scope(prefix):
        if kind == FlatRate.kind:
            take(data, "", {"kind", "price_per_kwh"})
            return FlatRate(decimal_value("price_per_kwh", data["price_per_kwh"]))
        if kind == TimeOfUse.kind:
            take(data, "", {"kind", "default_price_per_kwh", "windows"})
            default = decimal_value("default_price_per_kwh", data["default_price_per_kwh"])
            return TimeOfUse(_items("windows", data["windows"], _window_from_dict), default)
        if kind == TieredBlocks.kind:
            take(data, "", {"kind", "blocks"})
            return TieredBlocks(_items("blocks", data["blocks"], _block_from_dict))
    if kind is None:
        raise TariffError(path(prefix, "kind"), "is missing")
    kinds = ", ".join(repr(k) for k in (FlatRate.kind, TimeOfUse.kind, TieredBlocks.kind))
    raise TariffError(path(prefix, "kind"), f"must be one of {kinds}, got {kind!r}")


def _items(field: str, value: object, parse: Callable[[object], _T]) -> tuple[_T, ...]:
    if not isinstance(value, list | tuple):
        raise TariffError(field, "must be an array of tables")
    items: list[_T] = []
    for i, item in enumerate(value):
        with field_scope(f"{field}[{i}]"):
            items.append(parse(item))
    return tuple(items)


def _window_from_dict(data: object) -> TouWindow:
    table = take(data, "", _WINDOW_KEYS)
    return TouWindow(
        str_value("name", table["name"]),
        _days(table["days"]),
        str_value("start", table["start"]),
        str_value("end", table["end"]),
        decimal_value("price_per_kwh", table["price_per_kwh"]),
    )


def _days(value: object) -> frozenset[int]:
    names = ", ".join(WEEKDAY_NAMES)
    if not isinstance(value, list | tuple) or not all(d in WEEKDAY_NAMES for d in value):
        raise TariffError("days", f"must be an array of weekday names ({names})")
    if len(set(value)) != len(value):
        raise TariffError("days", "names a weekday twice")
    return frozenset(WEEKDAY_NAMES.index(d) for d in value)


def _block_from_dict(data: object) -> Block:
    table = take(data, "", _PRICE_KEY, {"price_per_kwh", "up_to_kwh"})
    bound = table.get("up_to_kwh")
    return Block(
        None if bound is None else decimal_value("up_to_kwh", bound),
        decimal_value("price_per_kwh", table["price_per_kwh"]),
    )


def toml_text(data: Mapping[str, Any]) -> str:
    """TOML for a tariff's dict: top-level values, then its tables and arrays of tables."""
    lines: list[str] = []
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    lines += [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for name, table in tables:
        arrays = [(k, v) for k, v in table.items() if _is_table_array(v)]
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if not _is_table_array(v)]
        for key, items in arrays:
            for item in items:
                lines += ["", f"[[{name}.{key}]]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping)


def _toml_value(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        # JSON's escapes are valid in a TOML basic string for the printable text tariffs hold.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
