"""Fraud test material: a small labelled simulated fleet, and real UCI days with theft."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from meterseal.fraud.data import MAX_PHASES, Consumption, PhasorDays
from meterseal.fraud.fleet import FleetSpec, Labelled, fleet_chunks, labelled_fleet
from meterseal.fraud.pipeline import Analysis, Settings, analyse
from meterseal.meter.theft import Alteration, TheftPlan, alter_days

F64 = npt.NDArray[np.float64]
UCI = Path(__file__).parent.parent / "vectors" / "uci-fraud" / "uci_26weeks.csv.gz"
FIRST_DAY = dt.date(2026, 9, 7)  # a Monday, as the UCI sample's first day
SETTINGS = Settings(iterations=3_000, sample_days=3_000, seed=3)


def household(days: int, rng: np.random.Generator, heater_share: float = 0.15) -> F64:
    """Readings (1, days, 96) in kWh at a few appliance levels: standby, a fridge cycling,
    a water heater running in a share of the slots, and a little noise (the level
    detectors' households)."""
    shape = (days, 96)
    standby = np.full(shape, 0.02)
    fridge = 0.025 * (rng.random(shape) < 0.4)
    heater = 0.5 * (rng.random(shape) < heater_share)
    noise = rng.normal(1.0, 0.02, shape)
    out: F64 = ((standby + fridge + heater) * noise)[None]
    return out


@pytest.fixture(scope="session")
def small_fleet() -> Labelled:
    """400 simulated customers over 21 days with phasor reports; 12 % thieves."""
    plan = TheftPlan(share=0.12, holiday_share=0.05, appliance_share=0.03, seed=5)
    return labelled_fleet(FleetSpec(400, FIRST_DAY, 21, plan, seed=5, phasor=True))


@pytest.fixture(scope="session")
def small_analysis(small_fleet: Labelled) -> Analysis:
    """The small fleet analysed once."""
    return analyse(small_fleet.data, SETTINGS)


@dataclass(frozen=True)
class UciDays:
    """The UCI sample as whole days: Wh (days, 96), volts and amps per reading."""

    wh: npt.NDArray[np.int64]
    volts: F64
    amps: F64

    def window(self, first: int, days: int) -> UciDays:
        """Days [first, first + days)."""
        cut = slice(first, first + days)
        return UciDays(self.wh[cut], self.volts[cut], self.amps[cut])


@pytest.fixture(scope="session")
def uci() -> UciDays:
    """The shipped 26-week UCI sample."""
    frame = pd.read_csv(UCI)
    days = len(frame) // 96
    shape = (days, 96)
    return UciDays(
        frame["energy_wh"].to_numpy(np.int64).reshape(shape),
        frame["voltage_v"].to_numpy(np.float64).reshape(shape),
        frame["current_a"].to_numpy(np.float64).reshape(shape),
    )


FIRST_UNIX_DAY = (FIRST_DAY - dt.date(1970, 1, 1)).days


def uci_customer(days: UciDays, alteration: Alteration | None) -> tuple[F64, F64, F64, F64]:
    """A UCI window as one customer, altered like a meter would be: kWh (D, 96), daily
    voltage and current per phase (D, 3), daily energy from the phasor (D,)."""
    wh = days.wh.astype(np.float64)
    power = (wh * 4.0)[..., None]
    amps = days.amps.copy()
    if alteration is not None:
        altered_wh, altered_power = alter_days(alteration, FIRST_UNIX_DAY, wh, power)
        assert altered_power is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(power[..., 0] > 0, altered_power[..., 0] / power[..., 0], 0.0)
        amps = np.where(power[..., 0] > 0, amps * ratio, altered_power[..., 0] / days.volts)
        wh, power = altered_wh.astype(np.float64), altered_power
    volts = np.full((len(wh), MAX_PHASES), np.nan)
    current = np.full((len(wh), MAX_PHASES), np.nan)
    volts[:, 0] = days.volts.mean(1)
    current[:, 0] = amps.mean(1)
    return wh / 1000.0, volts, current, power[..., 0].mean(1) * 24.0 / 1000.0


def population(
    simulated: int, uci_rows: list[tuple[str, tuple[F64, F64, F64, F64]]], days: int
) -> Consumption:
    """Simulated honest neighbours (energy only) plus the given UCI customers."""
    spec = FleetSpec(simulated, FIRST_DAY, days, TheftPlan(share=0.0), seed=9)
    _, sim, _ = next(fleet_chunks(spec, size=simulated))
    nan = np.full((simulated, days, MAX_PHASES), np.nan)
    names = list(sim.customers) + [name for name, _ in uci_rows]
    energy = np.concatenate([sim.energy, np.stack([r[0] for _, r in uci_rows])])
    phasor = PhasorDays(
        np.concatenate([nan, np.stack([r[1] for _, r in uci_rows])]),
        np.concatenate([nan, np.stack([r[2] for _, r in uci_rows])]),
        np.concatenate([np.full((simulated, days), np.nan), np.stack([r[3] for _, r in uci_rows])]),
    )
    return Consumption(tuple(names), FIRST_DAY, energy, phasor=phasor)
