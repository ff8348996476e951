"""Phasor reports from interval power: per-phase V, I, angle, P, Q (deterministic arithmetic).

The random inputs (voltage, power factor, THD, frequency, phase split) come from the
counter-based streams of `meterseal.meter.load` (passed in as `Draw` callables); this module
turns them into consistent electrical quantities:
P_k = V_k * I_k * pf and Q_k = P_k * tan(angle), with the angle positive when the current
lags the voltage (inductive load, Q > 0) and negative when it leads (capacitive, Q < 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterseal.model import PhaseMeasurement, PhasorReport

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Draw = Callable[[int], FloatArray]  # stream number -> one random number per interval

NOMINAL_VOLTAGE = 230.0
VOLTAGE_BAND = 0.10  # EN 50160: supply voltage within +-10 % of nominal
NOMINAL_FREQUENCY = 50.0


@dataclass(frozen=True, slots=True)
class PhaseArrays:
    """Per-interval, per-phase quantities, each of shape (intervals, phases)."""

    voltage: FloatArray
    current: FloatArray
    angle: FloatArray
    active_power: FloatArray
    reactive_power: FloatArray


def clip_voltage(voltage: FloatArray) -> FloatArray:
    """Clip RMS voltages to the EN 50160 band around 230 V."""
    low = NOMINAL_VOLTAGE * (1 - VOLTAGE_BAND)
    high = NOMINAL_VOLTAGE * (1 + VOLTAGE_BAND)
    return np.clip(voltage, low, high)


def phase_arrays(
    power_w: FloatArray,
    voltage: FloatArray,
    power_factor: FloatArray,
    leading: BoolArray,
    split: FloatArray,
) -> PhaseArrays:
    """Split mean power over phases and derive current, angle and reactive power."""
    active = power_w[:, None] * split
    pf = np.clip(power_factor, 1e-3, 1.0)[:, None]
    sign = np.where(leading, -1.0, 1.0)[:, None]
    angle = sign * np.arccos(pf) * np.ones_like(active)
    current = active / (voltage * pf)
    reactive = active * np.tan(angle)
    return PhaseArrays(voltage, current, np.degrees(angle), active, reactive)


def reports(
    phases: PhaseArrays,
    power_factor: FloatArray,
    thd: FloatArray,
    frequency: FloatArray,
    demand_w: FloatArray,
) -> list[PhasorReport]:
    """Build one `PhasorReport` per interval (plain Python floats, validated by the model)."""
    rows = zip(
        phases.voltage.tolist(),
        phases.current.tolist(),
        phases.angle.tolist(),
        phases.active_power.tolist(),
        phases.reactive_power.tolist(),
        strict=True,
    )
    out = []
    for (v, i, a, p, q), pf, h, f, d in zip(
        rows,
        power_factor.tolist(),
        thd.tolist(),
        frequency.tolist(),
        demand_w.tolist(),
        strict=True,
    ):
        measured = tuple(PhaseMeasurement(*m) for m in zip(v, i, a, p, q, strict=True))
        out.append(PhasorReport(measured, power_factor=pf, thd=h, frequency=f, demand=d))
    return out


def synthetic(
    normal: Draw,
    uniform: Draw,
    frequency: FloatArray,
    *,
    watts: FloatArray,
    base_w: FloatArray,
    appliance_w: FloatArray,
    phases: int,
    power_factor: float,
    thd: float,
    voltage_offset: float,
) -> list[PhasorReport]:
    """Reports for a modelled meter: V ~ N(230 + offset, 1.6), pf 0.85-0.99, THD 1-8 %."""
    volts = np.stack([normal(10 + k) for k in range(phases)], 1)
    voltage = clip_voltage(NOMINAL_VOLTAGE + voltage_offset + 1.6 * volts)
    pf = np.clip(power_factor + 0.02 * normal(1), 0.85, 0.99)
    leading = uniform(2) < 0.05  # mostly inductive; electronics make a few intervals capacitive
    raw = np.exp(0.3 * np.stack([normal(20 + k) for k in range(phases)], 1))
    split = raw / raw.sum(1, keepdims=True)
    distortion = np.clip(thd * np.exp(0.2 * normal(3)), 1.0, 8.0)
    # Demand: the base load's own ripple plus every appliance running in the interval.
    demand = np.maximum(watts, base_w * (1 + 0.25 * np.abs(normal(4))) + appliance_w)
    arrays = phase_arrays(watts, voltage, pf, leading, split)
    return reports(arrays, pf, distortion, frequency, demand)


def replayed(
    normal: Draw,
    frequency: FloatArray,
    *,
    watts: FloatArray,
    voltage: FloatArray,
    reactive_var: FloatArray,
    max_power_w: FloatArray,
    thd: float,
) -> list[PhasorReport]:
    """Reports for a replayed trace: its own voltage, reactive power and peak power."""
    apparent = np.hypot(watts, reactive_var)
    pf = np.where(apparent > 0, np.clip(watts / np.maximum(apparent, 1e-9), 0.3, 1.0), 1.0)
    split = np.ones((len(watts), 1))
    arrays = phase_arrays(
        watts, clip_voltage(voltage[:, None]), pf, np.zeros(len(watts), bool), split
    )
    distortion = np.clip(thd * np.exp(0.2 * normal(3)), 1.0, 8.0)
    return reports(arrays, pf, distortion, frequency, np.maximum(watts, max_power_w))
