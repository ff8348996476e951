"""ABNT NBR 14522 frames, sans-IO: 66-byte commands, 258-byte responses, CRC-16, BCD, signals.

NBR 14522 ("Intercâmbio de informações para sistemas de medição de energia elétrica") is the
Brazilian reader-to-meter protocol. What this module takes from public descriptions:

* a COMMAND block is 66 octets: the command code, the reader's serial number (3 octets,
  6 BCD digits), 60 octets of parameters, the CRC; a RESPONSE block is 258 octets: the code
  it answers, the meter's serial number (4 octets, 8 BCD digits), 251 octets of data, the CRC;
* the CRC is CRC-16 with polynomial x^16 + x^15 + x^2 + 1 (0x8005, processed LSB first as
  0xA001), initial value 0, no final XOR (the "CRC-16/ARC" parameters), over every octet but
  the last two, and is sent low octet first;
* composite commands (0x26, 0x27, 0x52: the load profile, "memória de massa") are answered
  by numbered response blocks: octets 6-7 hold the block number in BCD, and bit 0x10 of
  octet 6 marks the last block;
* the link signals ENQ 0x05, ACK 0x06, NAK 0x15 and WAIT 0x10; a reader repeats a block it
  NAKs at most 7 times, and a command that gets no answer at most 7 times;
* a response of code 0x39 says "command not implemented", 0x40 "occurrence in the meter".

Sources (read for the facts above; no code was copied): the standard's text as published at
idoc.tips ("NBR 14522 - Intercâmbio de informações para sistemas de medição de energia
elétrica", 2000 edition, sections 3 and 4); the open C++ reader lib-NBR14522
(github.com/RGNagel/lib-NBR14522: include/NBR14522.h for the sizes, codes, signals and
composite-block numbering, src/CRC.cpp and tests/CRC.cpp for the CRC parameters and check
values); its scripts/interpretaComandoNBR14522.py for the field offsets of the 0x14 and
0x20/0x21/0x22/0x51 responses (used in `nbr_blocks`). docs/meters.md lists them too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meterseal.errors import MeterFrameError

COMMAND_SIZE = 66
RESPONSE_SIZE = 258
PARAMETERS_SIZE = COMMAND_SIZE - 6  # after code and reader serial, before the CRC
DATA_SIZE = RESPONSE_SIZE - 7  # after code and meter serial, before the CRC
READER_SERIAL_DIGITS = 6
METER_SERIAL_DIGITS = 8
MAX_NAKS = 7  # a block refused this many times ends the session
MAX_UNANSWERED = 7  # a command sent this many times without an answer ends the session
LAST_BLOCK = 0x10  # in octet 6 of a composite command's response


class Signal(enum.IntEnum):
    """The one-octet link signals between blocks."""

    ENQ = 0x05  # the meter is ready for a command
    ACK = 0x06  # the block arrived whole
    NAK = 0x15  # the block arrived damaged: send it again
    WAIT = 0x10  # the meter is busy: keep waiting


class Code(enum.IntEnum):
    """Command codes this package sends or answers (names from the standard's tables)."""

    INSTANTANEOUS = 0x14  # grandezas instantâneas
    PARAMETERS_DEMAND_RESET = 0x20  # parâmetros com reposição de demanda
    PARAMETERS = 0x21  # parâmetros sem reposição de demanda (atuais)
    PARAMETERS_PREVIOUS = 0x22  # parâmetros sem reposição de demanda (anteriores)
    CURRENT_REGISTERS = 0x23  # registradores das grandezas atuais
    PREVIOUS_REGISTERS = 0x24  # registradores relativos à última reposição
    LOAD_PROFILE_CURRENT = 0x26  # memória de massa atual (composite)
    LOAD_PROFILE_PREVIOUS = 0x27  # memória de massa anterior (composite)
    PARAMETERS_LOAD_PROFILE = 0x51  # parâmetros com leitura de memória de massa
    LOAD_PROFILE = 0x52  # memória de massa (composite)
    NOT_IMPLEMENTED = 0x39  # a response: the meter does not implement the command
    OCCURRENCE = 0x40  # a response: an occurrence in the meter
    # meterseal's extensions, the paper's "command load connection and disconnection":
    # no code of the standard; taken from a range the standard's tables leave unused.
    SET_LOAD = 0xA1
    SET_CLOCK = 0xA2


COMPOSITE = frozenset({Code.LOAD_PROFILE_CURRENT, Code.LOAD_PROFILE_PREVIOUS, Code.LOAD_PROFILE})


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """NBR 14522's CRC-16 (CRC-16/ARC) of `data`."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """`body` followed by its CRC, low octet first."""
    return body + crc16(body).to_bytes(2, "little")


def check_crc(frame: bytes) -> bytes:
    """The frame without its CRC; MeterFrameError if the CRC does not match."""
    body, sent = frame[:-2], int.from_bytes(frame[-2:], "little")
    if crc16(body) != sent:
        raise MeterFrameError(f"bad CRC on a {len(frame)}-octet block (code 0x{frame[0]:02x})")
    return body


def bcd(value: int, octets: int) -> bytes:
    """`value` in packed BCD, most significant digits first, in exactly `octets` octets."""
    digits = f"{value:0{octets * 2}d}"
    if value < 0 or len(digits) != octets * 2:
        raise ValueError(f"{value} does not fit {octets} BCD octets")
    return bytes.fromhex(digits)


def from_bcd(data: bytes) -> int:
    """The number packed BCD `data` holds; MeterFrameError on a nibble above 9."""
    text = data.hex()
    if not text.isdigit():
        raise MeterFrameError(f"not BCD: {text}")
    return int(text) if text else 0


def serial_bytes(serial: str, digits: int) -> bytes:
    """A serial number of `digits` decimal digits as BCD."""
    if len(serial) != digits or not serial.isdigit():
        raise ValueError(f"a serial number here has {digits} decimal digits, got {serial!r}")
    return bytes.fromhex(serial)


@dataclass(frozen=True, slots=True)
class Command:
    """A COMMAND block: code, the reader's serial number, up to 60 octets of parameters."""

    code: int
    reader: str  # 6 digits
    parameters: bytes = b""

    def encode(self) -> bytes:
        """The 66 octets on the wire, parameters padded with zeros."""
        return _encode(
            self.code, self.reader, READER_SERIAL_DIGITS, self.parameters, PARAMETERS_SIZE
        )

    @classmethod
    def decode(cls, frame: bytes) -> Command:
        """The command in `frame`; MeterFrameError on a wrong length, CRC or serial."""
        return cls(*_decode(frame, "command", READER_SERIAL_DIGITS))


@dataclass(frozen=True, slots=True)
class Response:
    """A RESPONSE block: the code answered, the meter's serial number, 251 octets of data."""

    code: int
    meter: str  # 8 digits
    data: bytes = b""

    def encode(self) -> bytes:
        """The 258 octets on the wire, data padded with zeros."""
        return _encode(self.code, self.meter, METER_SERIAL_DIGITS, self.data, DATA_SIZE)

    @classmethod
    def decode(cls, frame: bytes) -> Response:
        """The response in `frame`; MeterFrameError on a wrong length, CRC or serial."""
        return cls(*_decode(frame, "response", METER_SERIAL_DIGITS))

    def at(self, offset: int, length: int = 1) -> bytes:
        """`length` octets from frame offset `offset` (0 is the code), as the tables count them."""
        return self.data[offset - 5 : offset - 5 + length]


def _encode(code: int, serial: str, digits: int, payload: bytes, size: int) -> bytes:
    """A block: code, serial number in BCD, `payload` padded to `size` octets, the CRC."""
    if len(payload) > size:
        raise ValueError(f"at most {size} octets after the serial number")
    return with_crc(bytes([code]) + serial_bytes(serial, digits) + payload.ljust(size, b"\0"))


def _decode(frame: bytes, kind: str, digits: int) -> tuple[int, str, bytes]:
    """(code, serial number, payload) of a command or response block."""
    size = COMMAND_SIZE if digits == READER_SERIAL_DIGITS else RESPONSE_SIZE
    if len(frame) != size:
        raise MeterFrameError(f"a {kind} block has {size} octets, got {len(frame)}")
    body = check_crc(frame)
    serial = body[1 : 1 + digits // 2].hex()
    if not serial.isdigit():
        raise MeterFrameError(f"a serial number in BCD, got {serial}")
    return body[0], serial, body[1 + digits // 2 :]


def block_header(number: int, last: bool) -> bytes:
    """Octets 6-7 of a composite command's response block `number` (from 1)."""
    if not 1 <= number <= 999:
        raise ValueError("composite blocks are numbered 1..999")
    high, low = divmod(number, 100)
    return bytes([high | (LAST_BLOCK if last else 0)]) + bcd(low, 1)


def block_number(response: Response) -> tuple[int, bool]:
    """(block number, is it the last) of a composite command's response block."""
    high, low = response.data[0], response.data[1:2]
    return (high & 0x0F) * 100 + from_bcd(low), bool(high & LAST_BLOCK)
