"""Emulated DLMS/COSEM meters on TCP: the IEC 62056-47 wrapper, or HDLC over a TCP line.

Each meter listens on a port of its own (port 0: the system picks). With the wrapper, every
APDU travels behind the 8-byte header (version, source and destination wPort, length); with
HDLC (IEC 62056-46, as a serial line bridged to TCP would carry it) the meter answers SNRM
and DISC with UA, and I-frames with I-frames, splitting an answer longer than the 128-octet
information field into segments that the client asks for one by one (RR). Frames are built
and parsed with the `dlms-cosem` library's classes.

Faults, for the agent's tests: `timeout` (the meter never answers after the association),
`wrong_frame` (the answer's APDU tag, or its HDLC frame check sequence, is damaged),
`partial` (half an answer, then silence), `foreign` (the meter reports another serial
number) and `bad_password` (the meter expects another LLS password: the association is
refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import struct
from dataclasses import dataclass, field

from dlms_cosem.hdlc import address, frames
from dlms_cosem.hdlc.exceptions import HdlcException

from meterseal.agent.dlms_meter import Association, DlmsMeterApp

WRAPPER_VERSION = 1
_WRAPPER = struct.Struct(">HHHH")
LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
HDLC_INFORMATION = 128  # the default maximum information field length (no negotiation)
CONTROL_SNRM, CONTROL_DISC, CONTROL_RR_MASK = 0x93, 0x53, 0x01


class Transport(enum.StrEnum):
    """How APDUs travel between the agent and the meter."""

    WRAPPER = "wrapper"
    HDLC = "hdlc"


class DlmsFault(enum.StrEnum):
    """A way an emulated DLMS meter misbehaves."""

    TIMEOUT = "timeout"
    WRONG_FRAME = "wrong_frame"
    PARTIAL = "partial"
    FOREIGN = "foreign"
    BAD_PASSWORD = "bad_password"  # noqa: S105 - a fault's name


class _Silent(Exception):
    """The emulated meter stops answering (a fault)."""


@dataclass
class DlmsMeterLine:
    """One emulated meter on one TCP port, speaking over `transport`."""

    app: DlmsMeterApp
    transport: Transport = Transport.WRAPPER
    faults: frozenset[DlmsFault] = frozenset()
    server: asyncio.Server | None = field(default=None, init=False)
    sessions: int = field(default=0, init=False)
    faulty: bool = field(default=False, init=False)  # whether the answer being sent may fail

    def __post_init__(self) -> None:
        if DlmsFault.FOREIGN in self.faults:
            self.app.serial = self.app.serial[:-1] + str((int(self.app.serial[-1]) + 1) % 10)
        if DlmsFault.BAD_PASSWORD in self.faults:  # the meter expects other secrets
            self.app.password = self.app.password + b"-changed"
            if self.app.keys is not None:
                encryption, authentication = self.app.keys
                self.app.keys = (encryption, bytes(b ^ 0x5A for b in authentication))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen; the address the meter answers on."""
        self.server = await asyncio.start_server(self._connection, host, port)
        bound = self.server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            self.server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        link = Association()
        try:
            if self.transport is Transport.WRAPPER:
                await self._wrapper(reader, writer, link)
            else:
                await _HdlcSession(self, reader, writer, link).run()
        except _Silent:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # say nothing more until the client gives up
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the emulator stops (no traceback per open connection)
        except (ValueError, IndexError, HdlcException):
            self.app.counts["malformed frames"] = self.app.counts.get("malformed frames", 0) + 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def respond(self, apdu: bytes, link: Association) -> bytes:
        """The application's answer, or _Silent when a timeout fault swallows it."""
        # Faults strike after the association: the agent meets them on its first read.
        session = link.session
        self.faulty = link.associated and (session is None or session.proven)
        if DlmsFault.TIMEOUT in self.faults and self.faulty:
            raise _Silent
        return self.app.answer(apdu, link)

    def damaged(self, data: bytes) -> bytes:
        """`data` as a wrong_frame fault sends it: the APDU's tag (wrapper) or the frame check
        sequence (HDLC) damaged."""
        if DlmsFault.WRONG_FRAME not in self.faults or not self.faulty:
            return data
        at = len(data) - 2 if self.transport is Transport.HDLC else _WRAPPER.size
        return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]

    async def _wrapper(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Association
    ) -> None:
        while True:
            _version, source, destination, length = _WRAPPER.unpack(await reader.readexactly(8))
            apdu = await reader.readexactly(length)
            answer = self.respond(apdu, link)
            header = _WRAPPER.pack(WRAPPER_VERSION, destination, source, len(answer))
            out = self.damaged(header + answer)
            if DlmsFault.PARTIAL in self.faults and self.faulty:
                writer.write(out[: len(out) // 2])
                await writer.drain()
                raise _Silent
            writer.write(out)
            await writer.drain()


class _HdlcSession:
    """The meter's (secondary station's) side of one HDLC connection."""

    def __init__(
        self,
        line: DlmsMeterLine,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: Association,
    ) -> None:
        self.line, self.reader, self.writer, self.link = line, reader, writer, link
        self.ssn = self.rsn = 0  # what the meter sent / received, modulo 8
        self.client: address.HdlcAddress | None = None
        self.server: address.HdlcAddress | None = None

    async def run(self) -> None:
        while True:
            frame = await self._frame()
            control = frame[3 + self._address_length(frame)]
            if control in (CONTROL_SNRM, CONTROL_DISC):
                self._addresses(frame)
                self.ssn = self.rsn = 0
                await self._send(self._ua().to_bytes())
                if control == CONTROL_DISC:
                    return
                continue
            if control & 0x01 == 0:  # an I-frame
                info = frames.InformationFrame.from_bytes(frame)
                self.rsn = (self.rsn + 1) % 8
                payload = info.payload
                if not payload.startswith(LLC_REQUEST):
                    raise _Silent
                await self._answer(self.line.respond(bytes(payload[3:]), self.link))

    async def _answer(self, apdu: bytes) -> None:
        data = LLC_RESPONSE + apdu
        chunks = [data[i : i + HDLC_INFORMATION] for i in range(0, len(data), HDLC_INFORMATION)]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            assert self.client is not None
            assert self.server is not None
            frame = frames.InformationFrame(
                destination_address=self.client,
                source_address=self.server,
                payload=chunk,
                send_sequence_number=self.ssn,
                receive_sequence_number=self.rsn,
                segmented=not last,
                final=True,
            )
            self.ssn = (self.ssn + 1) % 8
            out = self.line.damaged(frame.to_bytes())
            if DlmsFault.PARTIAL in self.line.faults and self.line.faulty:
                await self._send(out[: len(out) // 2])
                raise _Silent
            await self._send(out)
            if not last:  # the client asks for the next segment with RR
                await self._frame()

    def _ua(self) -> frames.UnNumberedAcknowledgmentFrame:
        return frames.UnNumberedAcknowledgmentFrame(
            destination_address=self.client, source_address=self.server
        )

    def _addresses(self, frame: bytes) -> None:
        self.server = address.HdlcAddress.destination_from_bytes(frame, "server")
        self.client = address.HdlcAddress.source_from_bytes(frame, "client")

    @staticmethod
    def _address_length(frame: bytes) -> int:
        destination, rest = address.HdlcAddress.extract_address_bytes(frame[3:])
        source, _ = address.HdlcAddress.extract_address_bytes(rest)
        return len(destination) + len(source)

    async def _frame(self) -> bytes:
        start = await self.reader.readexactly(1)
        while start != frames.HDLC_FLAG:
            start = await self.reader.readexactly(1)
        head = await self.reader.readexactly(2)
        if head[0:1] == frames.HDLC_FLAG:  # two flags in a row: the first ended nothing
            head = head[1:] + await self.reader.readexactly(1)
        length = ((head[0] & 0x07) << 8) | head[1]
        rest = await self.reader.readexactly(length - 2 + 1)  # the frame's rest, closing flag
        return bytes(frames.HDLC_FLAG) + head + rest

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


@dataclass
class DlmsEmulator:
    """A fleet of emulated DLMS meters, each on a port of its own."""

    lines: list[DlmsMeterLine]

    async def start(self, host: str = "127.0.0.1") -> list[tuple[str, int]]:
        """Start every meter; their addresses, in order."""
        return [await line.start(host) for line in self.lines]

    async def stop(self) -> None:
        """Stop every meter."""
        for line in self.lines:
            await line.stop()
