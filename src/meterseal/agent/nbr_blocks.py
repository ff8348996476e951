"""The data of NBR 14522 response blocks, sans-IO: parameters, registers, load profile, phasors.

Offsets are frame offsets (0 is the code octet, 1-4 the meter's serial), as in `nbr_frames`.

From public descriptions (see `nbr_frames` for the sources):

* parameters (0x20, 0x21, 0x22, 0x51): the meter's clock at 5-10 and the end of the last
  load-profile interval at 12-17 (BCD hh mm ss DD MM YY), the last two demand resets at 18-23
  and 24-29, the 12-bit words of the current load profile at 74-76 and since the last reset
  at 77-79 (BCD), the number of demand resets at 80, the demand interval in minutes now and
  before at 81-82, the quantity codes of channels 1-3 at 195-197, the load-profile interval
  (minutes, seconds, hundredths) at 203-205, the number of channel groups at 246;
* instantaneous values (0x14): the clock at 5-10, then IEEE 754 single floats, low octet
  first: phase voltages A-C, line voltages AB BC CA, phase currents A-C, neutral current,
  active power A B C total, reactive power (same four), quadratic apparent power, vector
  apparent power, distortion power, cos phi (each A B C total), 11-146;
* a load-profile reading is a run of 12-bit words, one per channel per interval, oldest
  first, ending with the interval that ends at the parameters' 12-17.

This project's own choices, where the public descriptions stop (an emulated meter and the
driver share them; a real meter model may differ and would get its own block decoder):

* the load-profile command's parameters: channel group (octet 5, BCD), how far back (6,
  BCD) and in what unit (7: 0 hours, 1 days); the words are packed two per three octets,
  high nibble first, 166 per composite block after its number (octets 7-255);
* current registers (0x23): the clock at 5-10, then each channel's total in pulses as
  12 BCD digits (6 octets) at 11, 17 and 23;
* each channel's constant Ke in mWh (or mvarh) per pulse, 8 BCD digits at 206, 210, 214 of
  the parameters, and the load relay's state at 218 (1 connected); the frequency as a float
  at 147-150 of the instantaneous values.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from meterseal.agent.nbr_frames import (
    DATA_SIZE,
    Code,
    Response,
    bcd,
    block_header,
    block_number,
    from_bcd,
)
from meterseal.errors import MeterFrameError

CHANNELS = 3  # a channel group: the load profile and registers come three channels at a time
ACTIVE_IMPORT = 0x01  # the quantity code this package bills: active energy delivered (Wh)
WORD_MAX = 0x0FFF
WORDS_PER_BLOCK = (DATA_SIZE - 2) * 2 // 3  # 166: two 12-bit words in three octets
HOURS, DAYS = 0, 1


def encode_clock(when: dt.datetime | None) -> bytes:
    """A clock field: BCD hh mm ss DD MM YY, all zero for 'never'."""
    if when is None:
        return bytes(6)
    return b"".join(
        bcd(v, 1) for v in (when.hour, when.minute, when.second, when.day, when.month)
    ) + bcd(when.year % 100, 1)


def decode_clock(data: bytes) -> dt.datetime | None:
    """The (naive, meter-local) time of a clock field; None if all zero."""
    if data == bytes(6):
        return None
    hour, minute, second, day, month, year = (from_bcd(data[i : i + 1]) for i in range(6))
    try:
        return dt.datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise MeterFrameError(f"not a time: {data.hex()}") from exc


def _clock(response: Response, offset: int) -> dt.datetime:
    value = decode_clock(response.at(offset, 6))
    if value is None:
        raise MeterFrameError(f"no time at octet {offset} of a 0x{response.code:02x} response")
    return value


def _place(data: bytearray, offset: int, value: bytes) -> None:
    data[offset - 5 : offset - 5 + len(value)] = value


@dataclass(frozen=True, slots=True)
class Parameters:
    """A parameters response (0x20, 0x21, 0x22, 0x51): the meter's clock and its setup."""

    clock: dt.datetime
    profile_end: dt.datetime  # end of the last complete load-profile interval
    profile_words: int  # 12-bit words of the load profile this command's reading holds
    profile_minutes: int
    channel_codes: tuple[int, int, int] = (ACTIVE_IMPORT, 0x02, 0x03)
    ke_mwh: tuple[int, int, int] = (1000, 1000, 1000)  # per pulse, per channel
    demand_minutes: int = 15
    resets: int = 0
    last_reset: dt.datetime | None = None
    previous_reset: dt.datetime | None = None
    reset_words: int = 0
    groups: int = 1
    load_connected: bool = True

    def encode(self) -> bytes:
        """The 251 data octets of the response."""
        data = bytearray(DATA_SIZE)
        _place(data, 5, encode_clock(self.clock))
        _place(data, 12, encode_clock(self.profile_end))
        _place(data, 18, encode_clock(self.last_reset))
        _place(data, 24, encode_clock(self.previous_reset))
        _place(data, 74, bcd(self.profile_words, 3) + bcd(self.reset_words, 3))
        _place(data, 80, bcd(self.resets % 100, 1) + bcd(self.demand_minutes, 1) * 2)
        _place(data, 195, bytes(bcd(c, 1)[0] for c in self.channel_codes))
        _place(data, 203, bcd(self.profile_minutes, 1) + bytes(2))
        for k, ke in enumerate(self.ke_mwh):
            _place(data, 206 + 4 * k, bcd(ke, 4))
        _place(data, 218, bytes([1 if self.load_connected else 0]))
        _place(data, 246, bcd(self.groups, 1))
        return bytes(data)

    @classmethod
    def decode(cls, response: Response) -> Parameters:
        """The parameters in a response; MeterFrameError if a field is not what it must be."""
        codes = tuple(from_bcd(response.at(195 + k)) for k in range(CHANNELS))
        ke = tuple(from_bcd(response.at(206 + 4 * k, 4)) for k in range(CHANNELS))
        minutes = from_bcd(response.at(203))
        if not minutes:
            raise MeterFrameError("a load-profile interval of 0 minutes")
        return cls(
            clock=_clock(response, 5),
            profile_end=_clock(response, 12),
            profile_words=from_bcd(response.at(74, 3)),
            profile_minutes=minutes,
            channel_codes=(codes[0], codes[1], codes[2]),
            ke_mwh=(ke[0], ke[1], ke[2]),
            demand_minutes=from_bcd(response.at(81)),
            resets=from_bcd(response.at(80)),
            last_reset=decode_clock(response.at(18, 6)),
            previous_reset=decode_clock(response.at(24, 6)),
            reset_words=from_bcd(response.at(77, 3)),
            groups=from_bcd(response.at(246)),
            load_connected=response.at(218) == b"\x01",
        )


@dataclass(frozen=True, slots=True)
class Registers:
    """A current-registers response (0x23): each channel's total in pulses at the clock."""

    clock: dt.datetime
    totals: tuple[int, int, int]

    def encode(self) -> bytes:
        """The 251 data octets of the response."""
        data = bytearray(DATA_SIZE)
        _place(data, 5, encode_clock(self.clock))
        for k, total in enumerate(self.totals):
            _place(data, 11 + 6 * k, bcd(total, 6))
        return bytes(data)

    @classmethod
    def decode(cls, response: Response) -> Registers:
        """The registers in a response."""
        totals = tuple(from_bcd(response.at(11 + 6 * k, 6)) for k in range(CHANNELS))
        return cls(_clock(response, 5), (totals[0], totals[1], totals[2]))


INSTANTANEOUS_FIELDS = (
    ("voltage", 3),
    ("line_voltage", 3),
    ("current", 3),
    ("neutral_current", 1),
    ("active_power", 4),
    ("reactive_power", 4),
    ("apparent_power", 4),
    ("vector_apparent_power", 4),
    ("distortion_power", 4),
    ("power_factor", 4),
    ("frequency", 1),
)
_FLOATS = struct.Struct("<" + "f" * sum(n for _, n in INSTANTANEOUS_FIELDS))


@dataclass(frozen=True, slots=True)
class Instantaneous:
    """An instantaneous-values response (0x14): per phase A B C, and totals where four."""

    clock: dt.datetime
    voltage: tuple[float, ...]  # V, phases A B C
    line_voltage: tuple[float, ...]  # V, AB BC CA
    current: tuple[float, ...]  # A
    neutral_current: tuple[float, ...]  # A, one value
    active_power: tuple[float, ...]  # W, A B C total
    reactive_power: tuple[float, ...]  # var
    apparent_power: tuple[float, ...]  # VA (quadratic)
    vector_apparent_power: tuple[float, ...]  # VA
    distortion_power: tuple[float, ...]  # VA
    power_factor: tuple[float, ...]  # cos phi
    frequency: tuple[float, ...]  # Hz, one value

    def encode(self) -> bytes:
        """The 251 data octets of the response."""
        values = [v for name, n in INSTANTANEOUS_FIELDS for v in _exactly(self, name, n)]
        data = bytearray(DATA_SIZE)
        _place(data, 5, encode_clock(self.clock))
        _place(data, 11, _FLOATS.pack(*values))
        return bytes(data)

    @classmethod
    def decode(cls, response: Response) -> Instantaneous:
        """The values in a response (floats as the meter sent them, NaN included)."""
        values = _FLOATS.unpack(response.at(11, _FLOATS.size))
        fields: dict[str, tuple[float, ...]] = {}
        at = 0
        for name, n in INSTANTANEOUS_FIELDS:
            fields[name] = tuple(values[at : at + n])
            at += n
        return cls(_clock(response, 5), **fields)


def _exactly(values: Instantaneous, name: str, n: int) -> tuple[float, ...]:
    got: tuple[float, ...] = getattr(values, name)
    if len(got) != n:
        raise ValueError(f"{name} has {n} values, got {len(got)}")
    return got


def profile_request(group: int, amount: int, unit: int) -> bytes:
    """The parameters of a load-profile command: channel group, how far back, hours or days."""
    if unit not in (HOURS, DAYS) or not 0 < amount <= 99:
        raise ValueError("a load-profile request goes back 1..99 hours or days")
    return bytes(1) + bcd(group, 1) + bcd(amount, 1) + bytes([unit])


def decode_profile_request(parameters: bytes) -> tuple[int, int, int]:
    """(group, amount, unit) of a load-profile command's parameters."""
    unit = parameters[3]
    if unit not in (HOURS, DAYS):
        raise MeterFrameError(f"unit {unit} is neither hours nor days")
    return from_bcd(parameters[1:2]), from_bcd(parameters[2:3]), unit


def pack_words(words: Sequence[int]) -> bytes:
    """12-bit words, two per three octets, high nibble first (an odd last word padded)."""
    out = bytearray()
    for i in range(0, len(words), 2):
        a = words[i]
        b = words[i + 1] if i + 1 < len(words) else 0
        if not (0 <= a <= WORD_MAX and 0 <= b <= WORD_MAX):
            raise ValueError("a load-profile word holds 0..4095 pulses")
        out += bytes([a >> 4, (a & 0x0F) << 4 | b >> 8, b & 0xFF])
    return bytes(out)


def _words(data: bytes) -> list[int]:
    words = []
    for i in range(0, len(data) - 2, 3):
        a, b, c = data[i], data[i + 1], data[i + 2]
        words += [a << 4 | b >> 4, (b & 0x0F) << 8 | c]
    return words


def unpack_words(data: bytes, count: int) -> list[int]:
    """The first `count` 12-bit words packed in `data`."""
    words = _words(data)
    if len(words) < count:
        raise MeterFrameError(f"{count} load-profile words expected, {len(words)} present")
    return words[:count]


def profile_blocks(
    meter: str, words: Sequence[int], code: int = Code.LOAD_PROFILE
) -> list[Response]:
    """The numbered response blocks of a composite load-profile command carrying `words`."""
    chunks = [words[i : i + WORDS_PER_BLOCK] for i in range(0, len(words), WORDS_PER_BLOCK)]
    chunks = chunks or [[]]
    return [
        Response(code, meter, block_header(n, n == len(chunks)) + pack_words(chunk))
        for n, chunk in enumerate(chunks, 1)
    ]


def profile_words(blocks: Sequence[Response], count: int) -> list[int]:
    """The `count` words of a composite reading; MeterFrameError if a block is missing or late."""
    words: list[int] = []
    for expected, block in enumerate(blocks, 1):
        number, last = block_number(block)
        if number != expected or last != (expected == len(blocks)):
            raise MeterFrameError(f"load-profile block {number} where {expected} was due")
        words += _words(block.data[2:])
    if len(words) < count:
        raise MeterFrameError(f"{count} load-profile words expected, {len(words)} present")
    return words[:count]
