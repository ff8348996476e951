"""Domain values: readings and phasor reports (frozen, validated on construction)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from meterseal.errors import ReadingError

MAX_METER_ID_LENGTH = 64
# Counters and timestamps fit a signed 64-bit column (SQLite and PostgreSQL BIGINT).
MAX_UINT63 = 2**63 - 1
MAX_PHASES = 3


def _check_finite(name: str, value: float) -> None:
    if not isinstance(value, float) or not math.isfinite(value):
        raise ReadingError(f"{name} must be a finite float, got {value!r}")


def _check_uint(name: str, value: int, upper: int = MAX_UINT63) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise ReadingError(f"{name} must be an integer in [0, {upper}], got {value!r}")


@dataclass(frozen=True, slots=True)
class PhaseMeasurement:
    """One phase of a phasor report: RMS voltage (V), current (A), angle (deg), P (W), Q (var)."""

    voltage: float
    current: float
    angle: float
    active_power: float
    reactive_power: float

    def __post_init__(self) -> None:
        for name in ("voltage", "current", "angle", "active_power", "reactive_power"):
            _check_finite(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class PhasorReport:
    """Power quality: per-phase phasors, power factor, THD (%), frequency (Hz), demand (W)."""

    phases: tuple[PhaseMeasurement, ...]
    power_factor: float
    thd: float
    frequency: float
    demand: float

    def __post_init__(self) -> None:
        if not 1 <= len(self.phases) <= MAX_PHASES:
            raise ReadingError(f"a phasor report has 1..{MAX_PHASES} phases")
        for name in ("power_factor", "thd", "frequency", "demand"):
            _check_finite(name, getattr(self, name))
        if not -1.0 <= self.power_factor <= 1.0:
            raise ReadingError("power_factor must lie in [-1, 1]")


@dataclass(frozen=True, slots=True)
class Reading:
    """One metered interval: who, which counter, when (Unix s, UTC), how long (s), energy (Wh)."""

    meter_id: str
    counter: int
    timestamp: int
    interval: int
    energy_wh: int
    phasor: PhasorReport | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.meter_id, str) or not 0 < len(self.meter_id) <= MAX_METER_ID_LENGTH:
            raise ReadingError(f"meter_id must be 1..{MAX_METER_ID_LENGTH} characters")
        _check_uint("counter", self.counter)
        _check_uint("timestamp", self.timestamp)
        _check_uint("interval", self.interval, upper=86_400)
        if self.interval == 0:
            raise ReadingError("interval must be positive")
        _check_uint("energy_wh", self.energy_wh, upper=2**53)


PHASE_FIELDS = ("voltage", "current", "angle", "active_power", "reactive_power")


def phasor_to_json(report: PhasorReport) -> dict[str, Any]:
    """A phasor report as JSON (the store's column, the bus's messages): phases as lists."""
    # Hand-written: dataclasses.asdict deep-copies and cost more than the rest of a save.
    return {
        "phases": [
            [p.voltage, p.current, p.angle, p.active_power, p.reactive_power] for p in report.phases
        ],
        "power_factor": report.power_factor,
        "thd": report.thd,
        "frequency": report.frequency,
        "demand": report.demand,
    }


def phasor_from_json(value: dict[str, Any]) -> PhasorReport:
    """The phasor report that `phasor_to_json` gave."""
    phases = tuple(PhaseMeasurement(*map(float, phase)) for phase in value["phases"])
    scalars = {k: float(value[k]) for k in ("power_factor", "thd", "frequency", "demand")}
    return PhasorReport(phases, **scalars)
