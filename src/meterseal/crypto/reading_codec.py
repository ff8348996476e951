"""CBOR encoding of a Reading, schema version 1 (CDDL in docs/reading-format.md)."""

from __future__ import annotations

from typing import Any

import cbor2

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.errors import ReadingError
from meterseal.model import PhaseMeasurement, PhasorReport, Reading

SCHEMA_VERSION = 1

# Map keys of the reading (small integers keep a packet small on a constrained link).
K_VERSION, K_METER, K_COUNTER, K_TIMESTAMP, K_INTERVAL, K_ENERGY, K_PHASOR = range(7)
# Map keys of the phasor report.
P_PHASES, P_POWER_FACTOR, P_THD, P_FREQUENCY, P_DEMAND = range(1, 6)

_READING_KEYS = frozenset(range(6))
_READING_ALLOWED = _READING_KEYS | {K_PHASOR}
_PHASOR_KEYS = frozenset(range(1, 6))


def _phasor_to_cbor(report: PhasorReport) -> dict[int, Any]:
    return {
        P_PHASES: [
            [p.voltage, p.current, p.angle, p.active_power, p.reactive_power] for p in report.phases
        ],
        P_POWER_FACTOR: report.power_factor,
        P_THD: report.thd,
        P_FREQUENCY: report.frequency,
        P_DEMAND: report.demand,
    }


def encode_reading(reading: Reading) -> bytes:
    """Deterministic CBOR bytes of a reading."""
    item: dict[int, Any] = {
        K_VERSION: SCHEMA_VERSION,
        K_METER: reading.meter_id,
        K_COUNTER: reading.counter,
        K_TIMESTAMP: reading.timestamp,
        K_INTERVAL: reading.interval,
        K_ENERGY: reading.energy_wh,
    }
    if reading.phasor is None:
        # Keys are inserted in ascending order and cbor2 writes integers and lengths in
        # their shortest form, so the plain encoder is already deterministic (and 4x faster).
        return cbor2.dumps(item)
    item[K_PHASOR] = _phasor_to_cbor(reading.phasor)
    return cose.dumps(item)  # floats need the shortest exact width


def _floats(values: Any, count: int) -> list[float]:
    if not isinstance(values, list) or len(values) != count:
        raise CoseFormatError("expected an array of floats")
    if not all(isinstance(v, float) for v in values):
        raise CoseFormatError("expected floats")
    return values


def _phasor_from_cbor(item: Any) -> PhasorReport:
    report = cose.expect_map(item, _PHASOR_KEYS, _PHASOR_KEYS)
    phases = report[P_PHASES]
    if not isinstance(phases, list):
        raise CoseFormatError("phases must be an array")
    scalars = _floats([report[k] for k in (P_POWER_FACTOR, P_THD, P_FREQUENCY, P_DEMAND)], 4)
    return PhasorReport(
        phases=tuple(PhaseMeasurement(*_floats(p, 5)) for p in phases),
        power_factor=scalars[0],
        thd=scalars[1],
        frequency=scalars[2],
        demand=scalars[3],
    )


def decode_reading(data: bytes) -> Reading:
    """Parse and validate reading bytes; only the canonical encoding is accepted.

    Raises CoseFormatError for a wrong shape and ReadingError for out-of-range values.
    """
    item = cose.expect_map(cose.loads_strict(data), _READING_ALLOWED, _READING_KEYS)
    if item[K_VERSION] != SCHEMA_VERSION:
        raise CoseFormatError(f"unsupported reading schema {item[K_VERSION]!r}")
    for key in (K_COUNTER, K_TIMESTAMP, K_INTERVAL, K_ENERGY):
        if type(item[key]) is not int:
            raise ReadingError("reading fields must be integers")
    phasor = _phasor_from_cbor(item[K_PHASOR]) if K_PHASOR in item else None
    reading = Reading(
        meter_id=item[K_METER],
        counter=item[K_COUNTER],
        timestamp=item[K_TIMESTAMP],
        interval=item[K_INTERVAL],
        energy_wh=item[K_ENERGY],
        phasor=phasor,
    )
    # One reading, one byte string: a re-encoding that differs means a non-canonical sender.
    if encode_reading(reading) != data:
        raise CoseFormatError("reading is not canonically encoded")
    return reading
