"""The C reader of signed originals (`meterseal.crypto._fixed`) against `fixed.py_signed_reading`.

The C reader must give exactly the Python reader's answer for any bytes: the same parts for
our meters' shape, None for everything else. The bytes here need no valid signature (neither
reader checks one), so they cover values no meter would sign: huge integers, long and
non-UTF-8 ids, invalid readings, long signatures; then every mutation and every prefix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import ModuleType

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.crypto import fixed
from tests.crypto.test_fixed import mutations

U64 = st.integers(0, 2**64 - 1)


def _native() -> ModuleType:
    if fixed._NATIVE is None:
        pytest.skip(
            "meterseal.crypto._fixed is not built (no C compiler at install time, or "
            f"{fixed.PURE_PYTHON_ENV}=1): signed originals are read in Python"
        )
    return fixed._NATIVE


@st.composite
def signed_originals(draw: st.DrawFn, *, valid: bool = False) -> bytes:
    """A COSE_Sign1 of a reading in our meters' layout, with any values (unsigned).

    `valid`: only values a Reading accepts, so both readers must read it.
    """
    meter_id = draw(st.text(min_size=1 if valid else 0, max_size=64 if valid else 70))
    kid = meter_id.encode() if valid else draw(st.just(meter_id.encode()) | st.binary(max_size=70))
    protected = cbor2.dumps({1: draw(st.integers(-(2**64), -1)), 4: kid, 15: {6: draw(U64)}})
    big = st.integers(0, 2**53) if valid else U64
    reading = {
        0: 1 if valid else draw(st.sampled_from([1, 1, 1, 2])),
        1: meter_id,
        2: draw(big),
        3: draw(big),
        4: draw(st.integers(1, 86_400) if valid else st.integers(0, 90_000)),
        5: draw(big),
    }
    payload = cbor2.dumps(reading)
    signature = draw(st.binary(max_size=300))
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


def _same(data: bytes) -> None:
    assert fixed.signed_reading(data) == fixed.py_signed_reading(data)


@settings(max_examples=400)
@given(signed_originals())
def test_the_c_reader_reads_what_the_python_reader_reads(data: bytes) -> None:
    _native()
    _same(data)


@settings(max_examples=200)
@given(signed_originals(valid=True))
def test_the_c_reader_reads_every_valid_reading(data: bytes) -> None:
    read = _native().signed_reading(data)
    assert read is not None
    assert fixed.signed_reading(data) == fixed.py_signed_reading(data) is not None


@settings(max_examples=600)
@given(st.data())
def test_the_c_reader_refuses_every_mutation_as_the_python_reader_does(
    data: st.DataObject,
) -> None:
    _native()
    original = data.draw(signed_originals())
    _same(data.draw(mutations(original)))


@settings(max_examples=60)
@given(signed_originals())
def test_every_prefix_is_read_alike(data: bytes) -> None:
    _native()
    for end in range(len(data) + 1):
        _same(data[:end])


@given(st.binary(max_size=200))
def test_random_bytes_are_read_alike(data: bytes) -> None:
    _native()
    _same(data)
    _same(b"\xd2\x84" + data)


def _sign1(reading: dict[int, object]) -> bytes:
    protected = cbor2.dumps({1: -7, 4: b"M-1", 15: {6: 1_793_000_000}})
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(reading), bytes(64)]))


def test_a_meters_reading_is_read_and_an_invalid_one_is_left_to_the_general_path() -> None:
    _native()
    reading: dict[int, object] = {0: 1, 1: "M-1", 2: 7, 3: 1_793_000_000, 4: 900, 5: 250}
    read = fixed.signed_reading(_sign1(reading))
    assert read is not None
    assert read.reading is not None
    assert (read.alg, read.meter_id, read.sent_at, read.signature) == (
        -7,
        "M-1",
        1_793_000_000,
        bytes(64),
    )
    assert (read.reading.counter, read.reading.energy_wh) == (7, 250)
    assert read == fixed.py_signed_reading(_sign1(reading))
    assert fixed.signed_reading(_sign1({**reading, 4: 0})) is None  # interval 0
    assert fixed.signed_reading(_sign1({**reading, 2: 2**63})) is None  # > BIGINT


def test_the_c_reader_takes_only_bytes() -> None:
    with pytest.raises(TypeError, match="takes bytes"):
        _native().signed_reading(bytearray(b"\xd2\x84"))


def test_the_environment_switch_selects_the_python_reader() -> None:
    code = (
        "from meterseal.crypto import fixed;"
        "assert fixed._NATIVE is None;"
        "print(fixed.IMPLEMENTATION)"
    )
    env = {**os.environ, fixed.PURE_PYTHON_ENV: "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "Python"


def test_a_kid_and_meter_id_both_not_utf8_are_left_to_the_general_path() -> None:
    # Found by the mutation property: the C reader decoded the meter id with the kid's
    # UnicodeDecodeError still set (SystemError) instead of giving None.
    data = (
        b"\xd2\x84J\xa3\x01 \x04A\x80\x0f\xa1\x06\x00\xa0O\xa6\x00\x01\x01b\x00\x80"
        b"\x02\x00\x03\x00\x04\x00\x05\x00@"
    )
    assert _native().signed_reading(data) is None
    assert fixed.py_signed_reading(data) is None
