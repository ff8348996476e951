"""The reading schema: canonical CBOR, strict decoding, validation."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given

from meterseal.crypto import reading_codec
from meterseal.crypto.cose import CoseFormatError
from meterseal.errors import ReadingError
from meterseal.model import PhaseMeasurement, PhasorReport, Reading
from tests.crypto.strategies import readings

PHASOR = PhasorReport(
    phases=(PhaseMeasurement(230.1, 4.2, -12.5, 950.0, 210.0),),
    power_factor=0.97,
    thd=2.5,
    frequency=50.01,
    demand=960.0,
)


@given(readings("MTR-000001"))
def test_round_trip(reading: Reading) -> None:
    assert reading_codec.decode_reading(reading_codec.encode_reading(reading)) == reading


def test_golden_encoding_of_a_plain_reading() -> None:
    reading = Reading("MTR-000001", 7, 1_793_000_000, 900, 250)
    # {0: 1, 1: "MTR-000001", 2: 7, 3: 1793000000, 4: 900, 5: 250}
    expected = bytes.fromhex(
        "a60001016a4d54522d303030303031020703" + "1a6adf0240" + "04190384" + "0518fa"
    )
    assert reading_codec.encode_reading(reading) == expected


def test_phasor_report_round_trips_and_uses_short_floats() -> None:
    reading = Reading("M", 1, 2, 900, 3, PHASOR)
    data = reading_codec.encode_reading(reading)
    assert reading_codec.decode_reading(data) == reading
    assert cbor2.loads(data)[6][4] == 50.01


@pytest.mark.parametrize(
    "item",
    [
        {0: 2, 1: "M", 2: 1, 3: 2, 4: 900, 5: 3},  # unknown schema version
        {0: 1, 1: "M", 2: 1, 3: 2, 4: 900},  # energy missing
        {0: 1, 1: "M", 2: 1, 3: 2, 4: 900, 5: 3, 9: 0},  # unknown field
        {0: 1, 1: "M", 2: 1, 3: 2, 4: 900, 5: 3, 6: {1: []}},  # phasor fields missing
        [1, "M", 1, 2, 900, 3],  # not a map
    ],
)
def test_wrong_shapes_are_format_errors(item: object) -> None:
    with pytest.raises(CoseFormatError):
        reading_codec.decode_reading(cbor2.dumps(item, canonical=True))


@pytest.mark.parametrize(
    "item",
    [
        {0: 1, 1: "M", 2: -1, 3: 2, 4: 900, 5: 3},  # negative counter
        {0: 1, 1: "M", 2: 1, 3: 2, 4: 0, 5: 3},  # zero interval
        {0: 1, 1: "M" * 65, 2: 1, 3: 2, 4: 900, 5: 3},  # meter id too long
        {0: 1, 1: "M", 2: 1, 3: 2, 4: 900, 5: 2.5},  # energy not an integer
    ],
)
def test_out_of_range_values_are_reading_errors(item: object) -> None:
    with pytest.raises(ReadingError):
        reading_codec.decode_reading(cbor2.dumps(item, canonical=True))


def test_non_canonical_encodings_are_refused() -> None:
    reading = Reading("M", 1, 2, 900, 3)
    canonical = reading_codec.encode_reading(reading)
    # Same map, keys in another order.
    shuffled = cbor2.dumps({5: 3, 4: 900, 3: 2, 2: 1, 1: "M", 0: 1})
    assert shuffled != canonical
    with pytest.raises(CoseFormatError):
        reading_codec.decode_reading(shuffled)
    # Same value, the counter in a needlessly long integer form (0x1a 00000001).
    long_form = canonical.replace(b"\x02\x01", b"\x02\x1a\x00\x00\x00\x01", 1)
    with pytest.raises(CoseFormatError):
        reading_codec.decode_reading(long_form)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(CoseFormatError):
        reading_codec.decode_reading(
            reading_codec.encode_reading(Reading("M", 1, 2, 900, 3)) + b"\x00"
        )


def test_nan_is_not_a_reading() -> None:
    with pytest.raises(ReadingError):
        PhaseMeasurement(float("nan"), 1.0, 0.0, 0.0, 0.0)


@given(readings("MTR-000002"))
def test_fast_encoding_is_the_canonical_one(reading: Reading) -> None:
    data = reading_codec.encode_reading(reading)
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)


def test_counter_fits_a_signed_64_bit_column() -> None:
    Reading("M", 2**63 - 1, 0, 900, 0)
    with pytest.raises(ReadingError):
        Reading("M", 2**63, 0, 900, 0)
