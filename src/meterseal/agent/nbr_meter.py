"""An emulated NBR 14522 meter, sans-IO: its registers and load profile from the load model.

The meter answers command blocks with response blocks (`answer`); the link around it (ENQ,
ACK, NAK, timing, faults) is `nbr_emulator`'s. Its consumption is what the simulated meters
of `meterseal simulate` would send for the same load-model index and seed
(`meterseal.meter.load.Fleet.energy`), so an emulated fleet and a simulated one bill alike.

Channel 1 counts active energy delivered in pulses of Ke = 1 Wh (quantity code 01), channel 2
inductive reactive energy (a fixed 0.97 power factor's share of channel 1; code 02), channel
3 active energy received (none; code 03). The registers hold each channel's pulses since
`installed`, plus `initial_wh` on channel 1; the load profile holds 15-minute intervals.
The meter's clock reads `clock()` in its own time zone (Brazilian meters keep local time).
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field

from meterseal.agent.nbr_blocks import (
    CHANNELS,
    DAYS,
    Instantaneous,
    Parameters,
    Registers,
    decode_clock,
    decode_profile_request,
    encode_clock,
    profile_blocks,
)
from meterseal.agent.nbr_frames import Code, Command, Response
from meterseal.errors import MeterFrameError
from meterseal.meter.load import Fleet
from meterseal.meter.profiles import INTERVAL

REACTIVE_SHARE = math.tan(math.acos(0.97))
DAY = 86_400


@dataclass
class EmulatedMeter:
    """One NBR 14522 meter: serial number, load-model index, clock and what it has counted."""

    serial: str  # 8 digits
    index: int  # the meter's index in the load model's fleet
    model: Fleet
    clock: Callable[[], float]  # Unix seconds
    tz: str = "UTC"
    installed: int = 0  # Unix seconds the registers started counting; 0: 62 days before clock
    initial_wh: int = 0
    load_connected: bool = True
    offset: float = 0.0  # seconds the meter's clock was set off `clock` (SET_CLOCK)
    _pending: list[int] | None = field(default=None, init=False)  # the Wh the next 0x52 sends
    _counted: tuple[int, list[int]] = field(default=(0, []), init=False)  # (end, Wh) cache

    def __post_init__(self) -> None:
        if not self.installed:
            self.installed = (int(self.clock()) // DAY - 62) * DAY

    def now(self) -> float:
        """The meter's clock, Unix seconds."""
        return self.clock() + self.offset

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The meter's time zone."""
        return zoneinfo.ZoneInfo(self.tz)

    def local(self, unix: float) -> dt.datetime:
        """Unix seconds as the meter's (naive) local time."""
        return dt.datetime.fromtimestamp(unix, self.zone).replace(tzinfo=None)

    def last_interval_end(self) -> int:
        """Unix seconds at which the last complete load-profile interval ended."""
        return int(self.now()) // INTERVAL * INTERVAL

    def energy(self, start: int, end: int) -> list[int]:
        """Wh delivered in each 15-minute interval of [start, end) (multiples of 900)."""
        count = max(0, (end - start) // INTERVAL)
        if count == 0:
            return []
        values: list[int] = self.model.energy([self.index], start, count)[0].tolist()
        return values

    def counted(self, at: int) -> list[int]:
        """Wh of every complete interval from installation to `at`."""
        end = max(self.installed, at // INTERVAL * INTERVAL)
        if self._counted[0] != end:
            self._counted = (end, self.energy(self.installed, end))
        return self._counted[1]

    def register_wh(self, at: int) -> int:
        """Channel 1's register at `at`: the Wh of every complete interval since installation."""
        return self.initial_wh + sum(self.counted(at))

    def profile(self, intervals: int) -> tuple[int, list[int]]:
        """(start, Wh per interval) of the last `intervals` complete intervals."""
        end = self.last_interval_end()
        start = max(self.installed, end - intervals * INTERVAL)
        return start, self.energy(start, end)

    def parameters(self, words: int = 0) -> Parameters:
        """The parameters block: clock, last interval's end, setup."""
        return Parameters(
            clock=self.local(self.now()),
            profile_end=self.local(self.last_interval_end()),
            profile_words=words,
            profile_minutes=INTERVAL // 60,
            load_connected=self.load_connected,
        )

    def registers(self) -> Registers:
        """The current registers in pulses (Ke 1 Wh, 1 varh)."""
        now = int(self.now())
        reactive = sum(round(wh * REACTIVE_SHARE) for wh in self.counted(now))
        return Registers(self.local(now), (self.register_wh(now), reactive, 0))

    def instantaneous(self) -> Instantaneous:
        """The phasors of the current interval from the load model (zero current if cut off)."""
        now = int(self.now())
        reading = next(self.model.readings("x", self.index, now, 1, with_phasor=True))
        report = reading.phasor
        assert report is not None, "asked for phasors"
        phases = list(report.phases) + [None] * (3 - len(report.phases))
        on = 1.0 if self.load_connected else 0.0

        def per_phase(name: str) -> tuple[float, ...]:
            return tuple(0.0 if p is None else float(getattr(p, name)) * on for p in phases)

        def with_total(values: tuple[float, ...]) -> tuple[float, ...]:
            return (*values, sum(values))

        voltage = tuple(0.0 if p is None else p.voltage for p in phases)
        active, reactive = per_phase("active_power"), per_phase("reactive_power")
        apparent = tuple(math.hypot(p, q) for p, q in zip(active, reactive, strict=True))
        pf = tuple(p / s if s else 1.0 for p, s in zip(active, apparent, strict=True))
        total_s = math.hypot(sum(active), sum(reactive))
        return Instantaneous(
            clock=self.local(now),
            voltage=voltage,
            line_voltage=tuple(v * math.sqrt(3) for v in voltage),
            current=per_phase("current"),
            neutral_current=(0.0,),
            active_power=with_total(active),
            reactive_power=with_total(reactive),
            apparent_power=with_total(apparent),
            vector_apparent_power=with_total(apparent),
            distortion_power=(0.0, 0.0, 0.0, 0.0),
            power_factor=(*pf, sum(active) / total_s if total_s else 1.0),
            frequency=(report.frequency,),
        )

    def answer(self, command: Command) -> list[Response]:
        """The response blocks to `command` (code 0x39 for a command it does not implement,
        0x40, an occurrence, for parameters it cannot read)."""
        try:
            return self._answer(command)
        except MeterFrameError:  # a whole, well-formed block whose parameters make no sense
            return [self._one(Code.OCCURRENCE, bytes([command.code]))]

    def _answer(self, command: Command) -> list[Response]:
        code = command.code
        if code in (Code.PARAMETERS, Code.PARAMETERS_DEMAND_RESET, Code.PARAMETERS_PREVIOUS):
            return [self._one(code, self.parameters().encode())]
        if code == Code.PARAMETERS_LOAD_PROFILE:
            _, amount, unit = decode_profile_request(command.parameters)
            intervals = amount * (DAY if unit == DAYS else 3600) // INTERVAL
            _, energy = self.profile(intervals)
            self._pending = energy  # what the 0x52 that follows sends, whatever the clock does
            return [self._one(code, self.parameters(len(energy) * CHANNELS).encode())]
        if code in (Code.LOAD_PROFILE, Code.LOAD_PROFILE_CURRENT):
            energy = self._pending if self._pending is not None else self.profile(96)[1]
            self._pending = None
            words = [w for wh in energy for w in (wh, round(wh * REACTIVE_SHARE), 0)]
            return profile_blocks(self.serial, words, code)
        if code == Code.CURRENT_REGISTERS:
            return [self._one(code, self.registers().encode())]
        if code == Code.INSTANTANEOUS:
            return [self._one(code, self.instantaneous().encode())]
        if code == Code.SET_CLOCK:
            when = decode_clock(command.parameters[:6])
            if when is not None:
                self.offset = when.replace(tzinfo=self.zone).timestamp() - self.clock()
            return [self._one(code, encode_clock(self.local(self.now())))]
        if code == Code.SET_LOAD:
            self.load_connected = command.parameters[0] == 1
            return [self._one(code, bytes([1 if self.load_connected else 0]))]
        return [self._one(Code.NOT_IMPLEMENTED, bytes([code]))]

    def _one(self, code: int, data: bytes) -> Response:
        return Response(code, self.serial, data)


def answer_frame(meter: EmulatedMeter, frame: bytes) -> list[bytes]:
    """The response frames to a command frame; MeterFrameError if the frame is damaged."""
    return [r.encode() for r in meter.answer(Command.decode(frame))]
