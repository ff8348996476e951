"""Encoded keys compare exactly as their typed values do, and decode back to them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.cascadb import keys
from meterseal.cascadb.errors import DataError
from meterseal.cascadb.keys import Value, decode_key, encode_key, encode_value, prefix_end

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)
TIMES = st.datetimes(timezones=st.just(dt.UTC))
NUMBERS = st.one_of(st.integers(), FLOATS, DECIMALS)


def _rank(value: Value) -> tuple[int, object]:
    """How SQLite orders values of different kinds (timestamps last)."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float | Decimal):
        return (1, Decimal(value))
    if isinstance(value, str):
        return (2, value.encode())
    if isinstance(value, bytes):
        return (3, value)
    assert isinstance(value, dt.datetime)
    return (4, value)


def _kind(value: Value) -> int:
    return {int: 0, float: 1, Decimal: 2}.get(type(value), 0)


VALUES = st.one_of(st.none(), NUMBERS, st.text(), st.binary(), TIMES)


def _cmp(a: object, b: object) -> int:
    return int(a > b) - int(a < b)  # type: ignore[operator]


@given(VALUES, VALUES)
def test_encoded_values_compare_as_the_values(a: Value, b: Value) -> None:
    expected = _cmp(_rank(a), _rank(b))
    if expected == 0 and a is not None:  # equal numbers of two types: int < float < Decimal
        expected = _cmp(_kind(a), _kind(b))
    assert _cmp(encode_value(a), encode_value(b)) == expected


@given(st.lists(VALUES, max_size=4), st.lists(VALUES, max_size=4))
def test_keys_compare_as_tuples_and_none_is_a_prefix_of_another(
    a: list[Value], b: list[Value]
) -> None:
    ka, kb = encode_key(a), encode_key(b)
    ra = [(_rank(v), _kind(v)) for v in a]
    rb = [(_rank(v), _kind(v)) for v in b]
    assert _cmp(ka, kb) == _cmp(ra, rb)
    if ra != rb and len(a) != len(b):  # a shorter tuple is a key prefix only of its extensions
        shorter, longer = (ka, kb) if len(a) < len(b) else (kb, ka)
        if longer.startswith(shorter):
            assert shorter < longer < prefix_end(shorter)


@given(st.lists(VALUES, max_size=5))
def test_keys_decode_to_their_values(values: list[Value]) -> None:
    decoded, end = decode_key(encode_key(values))
    assert end == len(encode_key(values))
    assert [_rank(v) for v in decoded] == [_rank(v) for v in values]
    assert [type(v) for v in decoded] == [type(v) for v in values]


@given(INT64, INT64)
def test_integers_sort_numerically_not_as_digits(a: int, b: int) -> None:
    assert _cmp(encode_value(a), encode_value(b)) == _cmp(a, b)
    assert decode_key(encode_value(a))[0] == [a]


def test_ten_sorts_after_nine() -> None:
    assert encode_value(9) < encode_value(10) < encode_value(10.5) < encode_value(100)
    assert encode_value(-10) < encode_value(-9) < encode_value(0) < encode_value(9)
    assert encode_value("10") < encode_value("9")  # text is text, as in SQLite
    assert encode_value(None) < encode_value(-(10**40)) < encode_value("") < encode_value(b"")


def test_a_table_and_index_prefix_holds_exactly_their_keys() -> None:
    row = keys.key_of(7, 1, [5, "x"])
    assert row.startswith(keys.table_prefix(7, 1))
    assert keys.table_prefix(7, 1) < row < prefix_end(keys.table_prefix(7, 1))
    assert not keys.key_of(7, 2, [5]).startswith(keys.table_prefix(7, 1))
    assert not keys.key_of(70, 1, [5]).startswith(keys.table_prefix(7, 1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("NaN"), object()])
def test_values_without_an_order_are_refused(bad: object) -> None:
    with pytest.raises(DataError):
        encode_value(bad)  # type: ignore[arg-type]


def test_naive_timestamps_are_utc() -> None:
    naive = dt.datetime(2026, 12, 6, 18, 0)
    assert encode_value(naive) == encode_value(naive.replace(tzinfo=dt.UTC))
    assert decode_key(encode_value(naive))[0] == [naive.replace(tzinfo=dt.UTC)]


@pytest.mark.parametrize("text", ["100", "-2500", "0.05", "123.45"])
def test_a_decimal_key_reads_back_in_plain_notation(text: str) -> None:
    # The key keeps no trailing zeros: 100 must not come back as 1E+2.
    decoded = decode_key(encode_value(Decimal(text)))[0][0]
    assert isinstance(decoded, Decimal)
    assert str(decoded) == text
