"""What a meter protocol driver offers the sealing agent, and the values it hands over.

A driver speaks one legacy protocol (ABNT NBR 14522, DLMS/COSEM, ...) to one meter and
answers in protocol-neutral values: the meter's identity, its energy registers, its load
profile over a window and its instantaneous values. Every value carries its unit and the
meter's own timestamp (Unix seconds, UTC). Energy is in whole watt-hours, as in
`meterseal.model.Reading`: the driver applies the meter's scaling and constant.

A driver fails with a `meterseal.errors.MeterDriverError`: `MeterTimeout`, `MeterFrameError`
(bad CRC, wrong length, partial frame), `WrongMeterSerial` or `MeterUnsupported`; each names
its `skip` reason, which the agent counts. A driver that can act on the meter (load relay,
clock) also implements `MeterControl`, and `LoadReader` if it can read the relay back without
switching it; signed commands are verified before either is called.

Drivers are asynchronous: the agent reads many meters from one event loop. A driver over a
blocking library runs its calls with `asyncio.to_thread`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from meterseal.model import PhaseMeasurement, PhasorReport


class Unit(enum.StrEnum):
    """Units of the values drivers hand over (IEC 62056-62 names where one exists)."""

    WH = "Wh"
    VARH = "varh"
    W = "W"
    VAR = "var"
    V = "V"
    A = "A"
    HZ = "Hz"
    DEGREE = "deg"
    PERCENT = "%"
    NONE = ""


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """Who answered: the serial number the meter reports, its protocol and what it says it is."""

    serial: str
    protocol: str  # "nbr14522", "dlms"
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""


@dataclass(frozen=True, slots=True)
class Register:
    """One register as the meter holds it: its code in the protocol, value and unit."""

    code: str  # OBIS "1.0.1.8.0.255", or the protocol's own channel code
    value: float
    unit: Unit


@dataclass(frozen=True, slots=True)
class RegisterSnapshot:
    """The meter's current registers at its clock's `read_at`; `active_import_wh` bills."""

    serial: str
    read_at: int
    active_import_wh: int  # total active energy imported since installation
    registers: tuple[Register, ...] = ()  # everything else the meter reported


@dataclass(frozen=True, slots=True)
class ProfileInterval:
    """One load-profile interval: it starts at `start` and lasts `seconds`."""

    start: int
    seconds: int
    active_import_wh: int
    channels: tuple[Register, ...] = ()  # further channels of the same interval
    flags: frozenset[str] = frozenset()  # the meter's status for the interval (power cut, ...)


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """The intervals a meter holds whose start lies in [`start`, `end`), oldest first."""

    serial: str
    start: int
    end: int
    intervals: tuple[ProfileInterval, ...]


@dataclass(frozen=True, slots=True)
class InstantaneousValues:
    """Per-phase RMS values and the totals the meter measured at `read_at`."""

    serial: str
    read_at: int
    phases: tuple[PhaseMeasurement, ...]
    frequency: float  # Hz
    power_factor: float
    demand: float  # W, the meter's current demand
    thd: float | None = None  # %, when the meter measures it

    def phasor(self) -> PhasorReport:
        """These values as meterseal's phasor report (THD 0 when the meter does not measure it)."""
        return PhasorReport(
            self.phases,
            power_factor=self.power_factor,
            thd=0.0 if self.thd is None else self.thd,
            frequency=self.frequency,
            demand=self.demand,
        )


@runtime_checkable
class MeterDriver(Protocol):
    """One connection to one meter over its protocol; every call may raise MeterDriverError."""

    async def identify(self) -> MeterIdentity:
        """The meter's serial number and description (checked against the addressed serial)."""
        ...

    async def read_registers(self) -> RegisterSnapshot:
        """The current energy registers."""
        ...

    async def read_load_profile(self, start: int, end: int) -> LoadProfile:
        """The load-profile intervals starting in [start, end), Unix seconds."""
        ...

    async def read_instantaneous(self) -> InstantaneousValues:
        """The instantaneous values (voltages, currents, powers, frequency)."""
        ...

    async def close(self) -> None:
        """End the session and release the connection; safe to call twice."""
        ...


class LoadState(enum.StrEnum):
    """The meter's load relay."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@runtime_checkable
class MeterControl(Protocol):
    """A driver that can act on the meter; called only for commands the agent verified."""

    async def set_load(self, state: LoadState) -> LoadState:
        """Switch the load relay; the state the meter reports afterwards."""
        ...

    async def set_clock(self, unix_seconds: int) -> int:
        """Set the meter's clock; the meter's time after setting it."""
        ...


@runtime_checkable
class LoadReader(Protocol):
    """A driver that can read the load relay's state without switching it."""

    async def read_load(self) -> LoadState:
        """The state the meter reports for its load relay."""
        ...


@dataclass(frozen=True, slots=True)
class MeterTarget:
    """Where and whom the agent reads: an address (HOST:PORT or a device path) and a serial."""

    address: str
    serial: str
    timeout: float = 5.0  # seconds per exchange


class DriverFactory(Protocol):
    """Opens a driver to a target (one per protocol); raises MeterDriverError if it cannot."""

    def __call__(self, target: MeterTarget) -> Awaitable[MeterDriver]:
        """A connected driver for `target`."""
        ...
