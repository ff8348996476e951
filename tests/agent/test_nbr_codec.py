"""NBR 14522 frames and blocks: published vectors, round trips, and tampering caught by the CRC."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.agent.nbr_blocks import (
    WORDS_PER_BLOCK,
    Instantaneous,
    Parameters,
    Registers,
    decode_clock,
    decode_profile_request,
    encode_clock,
    pack_words,
    profile_blocks,
    profile_request,
    profile_words,
    unpack_words,
)
from meterseal.agent.nbr_frames import (
    COMMAND_SIZE,
    RESPONSE_SIZE,
    Code,
    Command,
    Response,
    block_number,
    crc16,
)
from meterseal.errors import MeterFrameError

VECTORS = Path(__file__).parent.parent / "vectors" / "nbr14522"

serials = st.text("0123456789", min_size=8, max_size=8)
readers = st.text("0123456789", min_size=6, max_size=6)
clocks = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)


@pytest.mark.parametrize("line", (VECTORS / "crc_check.txt").read_text().splitlines())
def test_crc_matches_the_published_check_values(line: str) -> None:
    data, expected = line.split()
    assert crc16(bytes.fromhex(data)) == int(expected, 16)


def test_the_published_0x20_response_decodes() -> None:
    frame = bytes.fromhex((VECTORS / "response_0x20.hex").read_text())
    assert len(frame) == RESPONSE_SIZE
    response = Response.decode(frame)
    assert (response.code, response.meter) == (Code.PARAMETERS_DEMAND_RESET, "32600760")
    assert response.encode() == frame
    parameters = Parameters.decode(response)
    assert parameters.clock == dt.datetime(2021, 10, 7, 22, 15)
    assert parameters.profile_end == dt.datetime(2021, 10, 7, 22, 15)
    assert parameters.last_reset == dt.datetime(2021, 10, 7, 22, 15)
    assert parameters.previous_reset == dt.datetime(2021, 10, 1, 0, 0)
    assert (parameters.demand_minutes, parameters.profile_minutes) == (15, 5)
    assert (parameters.resets, parameters.reset_words) == (1, 5985)
    assert parameters.channel_codes == (1, 10, 11)


@given(readers, st.integers(0, 255), st.binary(max_size=60))
def test_commands_round_trip(reader: str, code: int, parameters: bytes) -> None:
    frame = Command(code, reader, parameters).encode()
    assert len(frame) == COMMAND_SIZE
    assert Command.decode(frame) == Command(code, reader, parameters.ljust(60, b"\0"))


@given(serials, st.integers(0, 255), st.binary(max_size=251))
def test_responses_round_trip(meter: str, code: int, data: bytes) -> None:
    frame = Response(code, meter, data).encode()
    assert len(frame) == RESPONSE_SIZE
    assert Response.decode(frame) == Response(code, meter, data.ljust(251, b"\0"))


@given(serials, st.binary(max_size=251), st.data())
def test_any_flipped_bit_fails_the_crc(meter: str, data: bytes, draw: st.DataObject) -> None:
    frame = bytearray(Response(0x23, meter, data).encode())
    bit = draw.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(MeterFrameError):
        Response.decode(bytes(frame))


@given(readers, st.binary(max_size=60), st.data())
def test_any_flipped_bit_in_a_command_fails_the_crc(
    reader: str, parameters: bytes, draw: st.DataObject
) -> None:
    frame = bytearray(Command(0x21, reader, parameters).encode())
    bit = draw.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(MeterFrameError):
        Command.decode(bytes(frame))


def test_cut_or_padded_frames_are_refused() -> None:
    frame = Response(0x21, "12345678").encode()
    for wrong in (frame[:-1], frame[:100], frame + b"\0"):
        with pytest.raises(MeterFrameError, match="258 octets"):
            Response.decode(wrong)


@given(clocks)
def test_clocks_round_trip(when: dt.datetime) -> None:
    assert decode_clock(encode_clock(when)) == when


@given(
    clocks,
    clocks,
    st.integers(0, 999_999),
    st.integers(1, 60),
    st.tuples(*[st.integers(0, 99)] * 3),
    st.tuples(*[st.integers(0, 99_999_999)] * 3),
    st.booleans(),
)
def test_parameters_round_trip(
    clock: dt.datetime,
    end: dt.datetime,
    words: int,
    minutes: int,
    codes: tuple[int, int, int],
    ke: tuple[int, int, int],
    connected: bool,
) -> None:
    parameters = Parameters(
        clock, end, words, minutes, codes, ke, load_connected=connected, last_reset=end
    )
    response = Response(Code.PARAMETERS, "00000001", parameters.encode())
    assert Parameters.decode(Response.decode(response.encode())) == parameters


@given(clocks, st.tuples(*[st.integers(0, 10**12 - 1)] * 3))
def test_registers_round_trip(clock: dt.datetime, totals: tuple[int, int, int]) -> None:
    registers = Registers(clock, totals)
    assert Registers.decode(Response(0x23, "00000001", registers.encode())) == registers


finite = st.floats(-1e6, 1e6, width=32)


@given(clocks, st.lists(finite, min_size=35, max_size=35))
def test_instantaneous_values_round_trip(clock: dt.datetime, values: list[float]) -> None:
    sizes = [3, 3, 3, 1, 4, 4, 4, 4, 4, 4, 1]
    fields, at = [], 0
    for n in sizes:
        fields.append(tuple(values[at : at + n]))
        at += n
    original = Instantaneous(clock, *fields)
    decoded = Instantaneous.decode(Response(0x14, "00000001", original.encode()))
    assert decoded == original
    assert all(not math.isnan(v) for v in decoded.active_power)


@given(st.lists(st.integers(0, 4095), max_size=700))
def test_load_profile_words_round_trip_through_numbered_blocks(words: list[int]) -> None:
    blocks = profile_blocks("12345678", words)
    assert len(blocks) == max(1, -(-len(words) // WORDS_PER_BLOCK))
    assert [block_number(b) for b in blocks] == [
        (n, n == len(blocks)) for n in range(1, len(blocks) + 1)
    ]
    again = [Response.decode(b.encode()) for b in blocks]
    assert profile_words(again, len(words)) == words
    assert unpack_words(pack_words(words), len(words)) == words


def test_missing_or_reordered_blocks_are_refused() -> None:
    blocks = profile_blocks("12345678", list(range(500)))
    assert len(blocks) == 4
    for wrong in (blocks[:2], blocks[1:], [blocks[1], blocks[0], *blocks[2:]]):
        with pytest.raises(MeterFrameError):
            profile_words(wrong, 500)


def test_words_hold_twelve_bits() -> None:
    with pytest.raises(ValueError, match=r"0\.\.4095"):
        pack_words([4096])


@given(st.integers(0, 99), st.integers(1, 99), st.sampled_from([0, 1]))
def test_load_profile_requests_round_trip(group: int, amount: int, unit: int) -> None:
    command = Command.decode(
        Command(
            Code.PARAMETERS_LOAD_PROFILE, "000001", profile_request(group, amount, unit)
        ).encode()
    )
    assert decode_profile_request(command.parameters) == (group, amount, unit)


def test_serials_are_decimal_digits() -> None:
    with pytest.raises(ValueError, match="8 decimal digits"):
        Response(0x21, "1234567").encode()
    frame = bytearray(Response(0x21, "12345678").encode())
    frame[1] = 0xAB
    frame[-2:] = crc16(bytes(frame[:-2])).to_bytes(2, "little")
    with pytest.raises(MeterFrameError, match="BCD"):
        Response.decode(bytes(frame))
