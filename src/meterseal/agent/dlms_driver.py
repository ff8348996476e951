"""The DLMS/COSEM meter driver: the `dlms-cosem` library's client as an agent driver.

The driver opens a TCP connection (the IEC 62056-47 wrapper, or HDLC over a line bridged to
TCP), associates with the meter's management logical device (server address 1) as client 16
with the meter's LLS password, or HLS-GMAC with every APDU ciphered (security suite 0, AES-128-GCM)
when the meter's keys are given, and reads by OBIS code: the serial number (0.0.96.1.0.255,
checked against the addressed serial), the clock, active energy import 1.0.1.8.0.255 with its
scaler and unit, the load profile 1.0.99.1.0.255 (its buffer read with a range descriptor on
the clock; entries are stamped at their interval's end) and instantaneous values. It acts on
the disconnect control 0.0.96.3.10.255 (remote_disconnect, remote_reconnect) and the clock.

The library is blocking: each call runs in a worker thread, one at a time per meter. Its
failures become the driver errors the agent counts: no answer in time `MeterTimeout`, part
of an answer `PartialFrame`, an answer that does not parse or check `MeterFrameError`, a
refused association or an object the meter lacks `MeterUnsupported`, another serial number
`WrongMeterSerial`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from dlms_cosem import cosem, enumerations, exceptions
from dlms_cosem import time as dlms_time
from dlms_cosem.client import ActionError, DataResultError, DlmsClient, HLSError
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.dlms_data import OctetStringData
from dlms_cosem.hdlc.exceptions import HdlcException
from dlms_cosem.hdlc.frames import HDLC_FLAG
from dlms_cosem.io import BlockingTcpIO, HdlcTransport, TcpTransport
from dlms_cosem.protocol import xdlms
from dlms_cosem.security import (
    HighLevelSecurityGmacAuthentication,
    LowLevelSecurityAuthentication,
)
from dlms_cosem.utils import parse_as_dlms_data

from meterseal.agent.dlms_meter import (
    ACTIVE_IMPORT,
    CLOCK,
    DISCONNECT_CONTROL,
    INSTANTANEOUS,
    LOAD_PROFILE,
    SERIAL,
)
from meterseal.agent.driver import (
    DriverFactory,
    InstantaneousValues,
    LoadProfile,
    LoadState,
    MeterDriver,
    MeterIdentity,
    MeterTarget,
    ProfileInterval,
    Register,
    RegisterSnapshot,
    Unit,
)
from meterseal.errors import (
    MeterDriverError,
    MeterFrameError,
    MeterTimeout,
    MeterUnsupported,
    PartialFrame,
    WrongMeterSerial,
)
from meterseal.meter.profiles import INTERVAL
from meterseal.model import PhaseMeasurement
from meterseal.runtime.address import parse_address

# The library logs every frame through structlog at debug level; an agent reading a fleet
# would print them all. Unless the program configured structlog itself, keep warnings only.
if not structlog.is_configured():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

PROTOCOL = "dlms"
CLIENT_ADDRESS = 16  # the public client's address is 16; the management client's too, here
SERVER_ADDRESS = 1  # the management logical device
CLIENT_TITLE = b"MSAGENT1"  # the agent's system title (8 octets) in ciphered associations
IC = enumerations.CosemInterface
_UNITS = {30: Unit.WH, 32: Unit.VARH, 27: Unit.W, 35: Unit.V, 33: Unit.A, 44: Unit.HZ}
_R = TypeVar("_R")
_FRAME_FORMAT = 0xA0  # the frame format field's type 3 nibble: 1010 S LLL LLLLLLLL
# Format (2), destination and source addresses (1 each at least), control (1), FCS (2).
_SHORTEST_FRAME = 7
# What an answer that does not parse, or does not decipher, raises in the library.
# The longest GET answer taken: a year of 15-minute load profile is ~0.8 MB.
MAX_ANSWER = 4 << 20
_NOT_DLMS = (ValueError, KeyError, IndexError, TypeError, HdlcException,
             exceptions.LocalDlmsProtocolError, exceptions.CryptographyError)  # fmt: skip


class _BoundedClient(DlmsClient):  # type: ignore[misc]
    """The library's client, its long GET held to the standard's sequence and a size.

    The library asks for the next block of a long GET for as long as the meter sends one,
    whatever its number: a meter that never sends its last block held the agent on it for
    ever, its answer growing, and a block sent twice was joined twice into the answer.
    """

    def get(self, cosem_attribute: Any, access_descriptor: Any = None) -> bytes:
        """The attribute's A-XDR value: one answer, or blocks 1, 2, ... of at most MAX_ANSWER."""
        self.send(
            xdlms.GetRequestNormal(
                cosem_attribute=cosem_attribute, access_selection=access_descriptor
            )
        )
        data, expected = bytearray(), 1
        while True:
            answer = self.next_event()
            if isinstance(answer, xdlms.GetResponseNormal):
                return bytes(answer.data)
            if isinstance(
                answer, xdlms.GetResponseNormalWithError | xdlms.GetResponseLastBlockWithError
            ):
                raise DataResultError(f"the meter refused the GET: {answer.error!r}")
            if not isinstance(answer, xdlms.GetResponseWithBlock | xdlms.GetResponseLastBlock):
                raise ValueError(f"{type(answer).__name__} answers no GET")
            if answer.block_number != expected:
                raise ValueError(f"block {answer.block_number} where block {expected} was due")
            data += answer.data
            if len(data) > MAX_ANSWER:
                raise ValueError(f"a GET answer past {MAX_ANSWER} octets (block {expected})")
            if isinstance(answer, xdlms.GetResponseLastBlock):
                return bytes(data)
            self.send(
                xdlms.GetRequestNext(
                    invoke_id_and_priority=answer.invoke_id_and_priority, block_number=expected
                )
            )
            expected += 1


@dataclass(frozen=True)
class DlmsSecrets:
    """A meter's DLMS secrets (kept like other meter keys: dlms_keys): its LLS password, or
    its global unicast encryption and authentication keys (16 octets each, suite 0), which
    make the association HLS-GMAC and cipher every APDU."""

    password: bytes = b""
    encryption_key: bytes | None = None
    authentication_key: bytes | None = None

    @property
    def ciphered(self) -> bool:
        """Whether the association is HLS-GMAC with ciphered APDUs."""
        return self.encryption_key is not None and self.authentication_key is not None


class _WatchedTcpIO(BlockingTcpIO):  # type: ignore[misc]
    """The library's blocking TCP I/O, remembering what came since the last request.

    Its own `recv` loops for ever on a connection the meter closed (an empty read is not an
    error there); this one stops with CommunicationError.
    """

    received: bytearray

    def send(self, data: bytes) -> None:
        self.received = bytearray()
        super().send(data)

    def recv(self, amount: int = 1) -> bytes:
        if self.tcp_socket is None:
            raise exceptions.CommunicationError("not connected")
        data = b""
        while len(data) < amount:
            try:
                chunk = self.tcp_socket.recv(amount - len(data))
            except OSError as exc:
                raise exceptions.CommunicationError("could not receive data") from exc
            if not chunk:
                raise exceptions.CommunicationError("the meter closed the connection")
            data += chunk
            self.received += chunk
        return data


class _LengthFramedHdlc(HdlcTransport):  # type: ignore[misc]
    """The library's HDLC transport, reading each frame whole by its length field.

    IEC 62056-46 frames are not octet-stuffed: a flag octet (0x7E) may sit inside a frame, its
    check sequence included, and only the frame format's 11-bit length says where it ends.
    The library reads up to the next 0x7E and, when that piece does not parse, reads on; a
    frame whose check sequence ends in 0x7E then leaves the closing flag alone, which it takes
    for an opening one, and it waits for a frame that never comes (the meter was skipped as
    `bad_frame` after the timeout). Here the first read brings the whole frame; while the
    connection's parser still finds a later flag in it, it needs no more octets; once it has
    tried them all, the frame is damaged. The closing flag of one frame may open the next, and
    flags in a row are fill.
    """

    after_frame = False  # the last octet read closed a frame, so it may open the next one

    def recv_frame(self) -> bytes:
        """The octets the parser needs next: none while it searches a frame read, else one frame."""
        pending = self.hdlc_connection
        if pending.buffer:
            if pending.buffer.find(HDLC_FLAG, pending.buffer_search_position) >= 0:
                return b""  # the parser ends its next try at a later flag of the same frame
            pending.buffer.clear()
            raise HdlcException("an HDLC frame that does not check")
        return self._whole_frame()

    def _whole_frame(self) -> bytes:
        first = self.io.recv(1)
        shared = self.after_frame and first[0] & 0xF0 == _FRAME_FORMAT
        self.after_frame = False
        if not shared:
            while first != HDLC_FLAG:  # noise before a frame: the parser would refuse it anyway
                first = self.io.recv(1)
            while first == HDLC_FLAG:
                first = self.io.recv(1)
        head = first + self.io.recv(1)
        length = ((head[0] & 0x07) << 8) | head[1]
        if length < _SHORTEST_FRAME:
            raise HdlcException(f"an HDLC frame of length {length}")
        rest = self.io.recv(length - 2 + 1)  # the frame after its format field, closing flag
        self.after_frame = rest.endswith(HDLC_FLAG)
        return bytes(HDLC_FLAG + head + rest)


class DlmsDriver:
    """One association with one DLMS meter (see the module docstring)."""

    def __init__(self, client: DlmsClient, io: _WatchedTcpIO, target: MeterTarget, hdlc: bool):
        self.client, self.io, self.target, self.hdlc = client, io, target, hdlc
        self._lock = asyncio.Lock()
        self._closed = self._broken = False

    async def _call(self, work: Callable[[], _R]) -> _R:
        async with self._lock:
            return await asyncio.to_thread(self._mapped, work)

    def _guarded(self, work: Callable[[], _R]) -> _R:
        try:
            return work()
        except BaseException:
            self._broken = True  # the session's state is unknown: close without a goodbye
            raise

    def _mapped(self, work: Callable[[], _R]) -> _R:
        try:
            return self._guarded(work)
        except exceptions.CommunicationError as exc:
            raise self._silence(exc) from exc
        except (DataResultError, ActionError) as exc:
            raise MeterUnsupported(f"{self.target.address}: {exc}") from exc
        except (exceptions.DlmsClientException, HLSError) as exc:
            raise MeterUnsupported(f"{self.target.address}: refused: {exc}") from exc
        except _NOT_DLMS as exc:
            raise MeterFrameError(f"{self.target.address}: not a DLMS answer: {exc}") from exc

    def _silence(self, exc: Exception) -> MeterDriverError:
        """What an answer that stopped coming was: nothing, part of one, or a damaged frame."""
        got = bytes(getattr(self.io, "received", b""))
        where = f"{self.target.address}: {exc.__cause__ or exc}"
        if not got:
            return MeterTimeout(f"no answer in {self.target.timeout} s from {where}")
        if self.hdlc and got.count(b"\x7e") >= 2 and got.endswith(b"\x7e"):
            return MeterFrameError(f"an HDLC frame that does not check from {where}")
        return PartialFrame(f"{len(got)} octets of an answer, then nothing, from {where}")

    def _get(self, interface: Any, code: str, attribute: int, selection: Any = None) -> Any:
        raw = self.client.get(
            cosem.CosemAttribute(interface, cosem.Obis.from_string(code), attribute),
            access_descriptor=selection,
        )
        return parse_as_dlms_data(raw)

    def _scaled(self, interface: Any, code: str) -> tuple[float, Unit]:
        value = self._get(interface, code, 2)
        scaler, unit = self._get(interface, code, 3)
        return round(value * 10.0**scaler, max(0, -scaler)), _UNITS.get(unit, Unit.NONE)

    def _serial(self) -> str:
        value = self._get(IC.DATA, SERIAL, 2)
        if not isinstance(value, bytes | bytearray):
            raise ValueError("the serial number is not an octet string")
        return bytes(value).decode()  # UnicodeDecodeError is a ValueError: not a DLMS answer

    def _clock(self) -> int:
        stamp, _ = dlms_time.datetime_from_bytes(self._get(IC.CLOCK, CLOCK, 2))
        return int(stamp.timestamp())

    async def identify(self) -> MeterIdentity:
        """The serial number the meter reports; WrongMeterSerial unless it is the target's."""
        serial = await self._call(self._serial)
        if serial != self.target.serial:
            raise WrongMeterSerial(self.target.serial, serial)
        return MeterIdentity(serial, PROTOCOL)

    async def read_registers(self) -> RegisterSnapshot:
        """Active energy imported (1.0.1.8.0) at the meter's clock, in Wh."""

        def read() -> RegisterSnapshot:
            at = self._clock()
            wh, unit = self._scaled(IC.REGISTER, ACTIVE_IMPORT)
            if unit is not Unit.WH:
                raise MeterUnsupported(f"{ACTIVE_IMPORT} is in {unit.value!r}, not Wh")
            register = Register(ACTIVE_IMPORT, wh, unit)
            return RegisterSnapshot(self.target.serial, at, round(wh), (register,))

        return await self._call(read)

    async def read_load_profile(self, start: int, end: int) -> LoadProfile:
        """Intervals starting in [start, end): entries stamped in [start + 900, end + 900)."""

        def read() -> list[Any]:
            clock = CaptureObject(cosem.CosemAttribute(IC.CLOCK, cosem.Obis.from_string(CLOCK), 2))
            selection = RangeDescriptor(
                restricting_object=clock,
                from_value=dt.datetime.fromtimestamp(start + INTERVAL, dt.UTC),
                to_value=dt.datetime.fromtimestamp(end + INTERVAL - 1, dt.UTC),
            )
            entries: list[Any] = self._get(IC.PROFILE_GENERIC, LOAD_PROFILE, 2, selection)
            return entries

        intervals = []
        for stamp_bytes, status, wh in await self._call(read):
            stamp, _ = dlms_time.datetime_from_bytes(stamp_bytes)
            begins = int(stamp.timestamp()) - INTERVAL
            flags = frozenset({"supply cut off"}) if status & 0x04 else frozenset()
            if start <= begins < end:
                intervals.append(ProfileInterval(begins, INTERVAL, int(wh), flags=flags))
        return LoadProfile(self.target.serial, start, end, tuple(intervals))

    async def read_instantaneous(self) -> InstantaneousValues:
        """Phase L1's voltage and current, total power, power factor and frequency."""

        def read() -> tuple[int, dict[str, float]]:
            at = self._clock()
            values = {
                what: self._scaled(IC.REGISTER, code)[0]
                for code, (what, _, _) in INSTANTANEOUS.items()
            }
            return at, values

        at, v = await self._call(read)
        power = v["active_power"]
        pf = v["power_factor"] or 1.0
        reactive = power * ((1 / pf**2 - 1) ** 0.5) if 0 < pf < 1 else 0.0
        angle = 0.0 if pf >= 1 else _degrees(pf)
        phase = PhaseMeasurement(v["voltage"], v["current"], angle, power, reactive)
        return InstantaneousValues(self.target.serial, at, (phase,), v["frequency"], pf, power)

    async def set_load(self, state: LoadState) -> LoadState:
        """remote_disconnect (method 1) or remote_reconnect (2); the control state read back."""
        method = 1 if state is LoadState.DISCONNECTED else 2
        control = cosem.Obis.from_string(DISCONNECT_CONTROL)

        def act() -> LoadState:
            self.client.action(
                cosem.CosemMethod(IC.DISCONNECT_CONTROL, control, method),
                data=b"\x0f\x00",  # integer 0: the methods' dummy argument
            )
            after = self._get(IC.DISCONNECT_CONTROL, DISCONNECT_CONTROL, 3)
            return LoadState.CONNECTED if after == 1 else LoadState.DISCONNECTED

        return await self._call(act)

    async def read_load(self) -> LoadState:
        """The disconnect control's control_state (attribute 3), switching nothing."""

        def read() -> LoadState:
            state = self._get(IC.DISCONNECT_CONTROL, DISCONNECT_CONTROL, 3)
            return LoadState.CONNECTED if state == 1 else LoadState.DISCONNECTED

        return await self._call(read)

    async def set_clock(self, unix_seconds: int) -> int:
        """Set the clock (attribute 2 of 0.0.1.0.0.255); the meter's time read back."""
        when = dlms_time.datetime_to_bytes(dt.datetime.fromtimestamp(unix_seconds, dt.UTC))

        def act() -> int:
            attribute = cosem.CosemAttribute(IC.CLOCK, cosem.Obis.from_string(CLOCK), 2)
            response = self.client.set(attribute, OctetStringData(when).to_bytes())
            if response.result != enumerations.DataAccessResult.SUCCESS:
                raise MeterUnsupported(f"the meter refused the clock: {response.result.name}")
            return self._clock()

        return await self._call(act)

    async def close(self) -> None:
        """Release the association and close the connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True

        def end() -> None:
            try:
                self.client.release_association()
            finally:
                self.client.disconnect()

        try:
            if not self._broken:
                await self._call(end)
        except MeterDriverError:
            pass  # a meter that stopped answering is closed all the same
        finally:
            await asyncio.to_thread(_drop, self.io)


def _degrees(power_factor: float) -> float:
    """The phase angle (degrees) of a power factor."""
    return math.degrees(math.acos(max(-1.0, min(1.0, power_factor))))


async def open_dlms(target: MeterTarget, secrets: DlmsSecrets, *, hdlc: bool = False) -> DlmsDriver:
    """A driver associated with the meter at `target.address` (HOST:PORT)."""
    host, port = parse_address(target.address, 0)
    timeout = max(1, round(target.timeout)) if target.timeout >= 1 else target.timeout
    io = _WatchedTcpIO(host=host, port=port, timeout=timeout)
    io.received = bytearray()
    transport: Any
    if hdlc:
        transport = _LengthFramedHdlc(CLIENT_ADDRESS, SERVER_ADDRESS, io, timeout=timeout)
    else:
        transport = TcpTransport(CLIENT_ADDRESS, SERVER_ADDRESS, io, timeout=timeout)
    authentication: Any = LowLevelSecurityAuthentication(secret=secrets.password)
    if secrets.ciphered:
        authentication = HighLevelSecurityGmacAuthentication()
    client = _BoundedClient(
        transport=transport,
        authentication=authentication,
        encryption_key=secrets.encryption_key,
        authentication_key=secrets.authentication_key,
        client_system_title=CLIENT_TITLE,
        timeout=timeout,
    )
    driver = DlmsDriver(client, io, target, hdlc)

    def associate() -> None:
        client.connect()
        client.associate()

    try:
        await driver._call(associate)
    except MeterDriverError:
        await asyncio.to_thread(_drop, io)
        raise
    return driver


def _drop(io: _WatchedTcpIO) -> None:
    if io.tcp_socket is not None:
        io.tcp_socket.close()
        io.tcp_socket = None


def dlms_factory(secrets: Mapping[str, DlmsSecrets], *, hdlc: bool = False) -> DriverFactory:
    """Opens DLMS drivers, each with its meter's secrets (by serial number)."""

    async def open_driver(target: MeterTarget) -> MeterDriver:
        known = secrets.get(target.serial)
        if known is None:
            raise MeterUnsupported(f"no DLMS secret for meter {target.serial} (dlms-keys.cbor)")
        return await open_dlms(target, known, hdlc=hdlc)

    return open_driver
