"""HDLC frames are read by their length: a 0x7E inside a frame (its check sequence) ends nothing.

The transport is the driver's, with the library's own HDLC connection parsing what it reads,
fed the octets an emulated line would carry.
"""

from __future__ import annotations

import pytest
from dlms_cosem.hdlc import frames, state
from dlms_cosem.hdlc.address import HdlcAddress
from dlms_cosem.hdlc.exceptions import HdlcException

from meterseal.agent.dlms_driver import CLIENT_ADDRESS, SERVER_ADDRESS, _LengthFramedHdlc

FLAG = frames.HDLC_FLAG
CLIENT = HdlcAddress(CLIENT_ADDRESS, address_type="client")
SERVER = HdlcAddress(SERVER_ADDRESS, address_type="server")


class _Line:
    """The octets a meter sent, handed out as the library's blocking io hands them."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, amount: int = 1) -> bytes:
        if len(self.data) < amount:
            raise TimeoutError("the reader asked for more than the meter sent")
        out, self.data = self.data[:amount], self.data[amount:]
        return out


def _frame(payload: bytes, number: int = 0) -> bytes:
    """An information frame from the meter, `number` its send sequence number."""
    frame = frames.InformationFrame(CLIENT, SERVER, payload, send_sequence_number=number)
    return bytes(frame.to_bytes())


def _payload_whose_check_ends_in_a_flag(inner: bool = False) -> bytes:
    for n in range(100_000):
        payload = (b"\x7e" if inner else b"") + n.to_bytes(4, "big")
        if _frame(payload)[-2:-1] == FLAG:  # the FCS's last octet, before the closing flag
            return payload
    raise AssertionError("no such payload in range")


def _answers(line: bytes, count: int) -> list[bytes]:
    """The payloads of `count` information frames the transport reads off `line`."""
    transport = _LengthFramedHdlc(CLIENT_ADDRESS, SERVER_ADDRESS, _Line(line))
    out = []
    for _ in range(count):
        transport.hdlc_connection.state.current_state = state.AWAITING_RESPONSE
        event = transport.next_event()
        assert isinstance(event, frames.InformationFrame)
        out.append(bytes(event.payload))
    return out


@pytest.mark.parametrize("inner", [False, True], ids=["check ends in 0x7e", "and one inside"])
def test_a_frame_whose_check_sequence_ends_in_0x7e_is_read_whole(inner: bool) -> None:
    tricky = _payload_whose_check_ends_in_a_flag(inner)
    assert _answers(_frame(tricky) + _frame(b"next", 1), 2) == [tricky, b"next"]


@pytest.mark.parametrize(
    "between", [b"", FLAG, FLAG * 3], ids=["shared flag", "separate flags", "fill flags"]
)
def test_frames_are_read_across_shared_and_fill_flags(between: bytes) -> None:
    first = _payload_whose_check_ends_in_a_flag()
    line = _frame(first) + between + _frame(b"second", 1)[1:]  # first's closing flag opens it
    assert _answers(line, 2) == [first, b"second"]


def test_noise_before_a_frame_is_skipped() -> None:
    assert _answers(b"\x00\x13" + _frame(b"x"), 1) == [b"x"]


def test_a_damaged_or_impossible_frame_is_an_hdlc_error_not_a_wait() -> None:
    damaged = bytearray(_frame(b"payload"))
    damaged[-4] ^= 0x01  # a bit of the payload: the check sequence no longer holds
    with pytest.raises(HdlcException):
        _answers(bytes(damaged), 1)
    with pytest.raises(HdlcException):
        _answers(FLAG + b"\xa0\x03" + b"\x00" * 2 + FLAG, 1)
