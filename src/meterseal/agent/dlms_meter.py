"""An emulated DLMS/COSEM meter's application layer, sans-IO: one APDU in, one APDU out.

The meter is a logical-name-referencing server with a password (LLS) association, or, given
its keys, HLS-GMAC with every APDU ciphered (`agent.dlms_hls`). It holds
the objects an electricity meter of the DLMS UA's Blue Book offers for billing: the serial
number (Data 0.0.96.1.0.255), the clock (Clock 0.0.1.0.0.255, settable), energy registers
(Register 1.0.1.8.0.255 active import, 1.0.2.8.0.255 active export, 1.0.3.8.0.255 reactive
import, each with its scaler and unit), instantaneous values (1.0.32.7.0, 1.0.31.7.0,
1.0.1.7.0, 1.0.13.7.0, 1.0.14.7.0), the load profile (Profile generic 1.0.99.1.0.255: clock,
status and the interval's active energy 1.0.1.29.0.255, one entry per 15 minutes stamped at
the interval's end, read with a range descriptor) and the disconnect control
(0.0.96.3.10.255: remote_disconnect, remote_reconnect). APDUs are parsed and built with the
`dlms-cosem` library's own classes (but one, see `_get`), so the emulator and the driver share
no code of ours.

Energy comes from nbr's `EmulatedMeter` (the load model's consumption for the same index and
seed), so a DLMS meter, an NBR 14522 meter and a simulated meter of one index bill alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlms_cosem import cosem, dlms_data, enumerations
from dlms_cosem import time as dlms_time
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.xdlms.conformance import Conformance
from dlms_cosem.utils import parse_as_dlms_data

from meterseal.agent.dlms_hls import CipherRefused, GmacSession
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.meter.profiles import INTERVAL

E = enumerations
SERIAL = "0.0.96.1.0.255"
CLOCK = "0.0.1.0.0.255"
ACTIVE_IMPORT = "1.0.1.8.0.255"
ACTIVE_EXPORT = "1.0.2.8.0.255"
REACTIVE_IMPORT = "1.0.3.8.0.255"
INTERVAL_ENERGY = "1.0.1.29.0.255"
LOAD_PROFILE = "1.0.99.1.0.255"
STATUS = "0.0.96.10.1.255"
DISCONNECT_CONTROL = "0.0.96.3.10.255"
ASSOCIATION = "0.0.40.0.0.255"  # the current association (logical name)
INSTANTANEOUS = {  # OBIS -> (what, scaler, DLMS unit code)
    "1.0.32.7.0.255": ("voltage", -1, 35),  # V, L1
    "1.0.31.7.0.255": ("current", -2, 33),  # A, L1
    "1.0.1.7.0.255": ("active_power", 0, 27),  # W, total
    "1.0.13.7.0.255": ("power_factor", -3, 255),
    "1.0.14.7.0.255": ("frequency", -2, 44),  # Hz
}
UNIT_WH, UNIT_VARH = 30, 32
# Sixty days of 15-minute intervals (a billing month and more): 23 octets an entry, ~132 kB
# for the whole buffer, sent in blocks (GET-RESPONSE-WITH-DATABLOCK) past the meter's PDU size.
MAX_PROFILE_ENTRIES = 96 * 60
MAX_PDU = 65535  # the largest APDU the meter sends or takes (its server_max_receive_pdu_size)
_BLOCK_HEAD = 12  # tag, type, invoke id, last-block, block number (4), choice, length (3)
_CIPHER_HEAD = 32  # general-glo-ciphering: tag, length (3), system title (9), SC, IC (4), tag


def obis(code: str) -> str:
    """An OBIS code as the library prints it ("1-0:1.8.0.255")."""
    return str(cosem.Obis.from_string(code).to_string())


@dataclass
class Association:
    """One connection's association with the meter: whether it stands, its ciphering session.

    Each TCP connection has its own, as each client of a real meter has its own association:
    a second connection without an AARQ is refused, whatever the first one holds.
    """

    associated: bool = False
    session: GmacSession | None = None
    blocks: list[bytes] = field(default_factory=list)  # a long GET answer's blocks still to send
    block: int = 0  # the number of the block sent last


@dataclass
class DlmsMeterApp:
    """One emulated meter's COSEM server: association state, objects, relay, clock."""

    meter: EmulatedMeter
    password: bytes  # the LLS secret (a meter with `keys` takes HLS-GMAC instead)
    serial: str = ""  # what 0.0.96.1.0.255 says; the meter's own serial unless a fault changes it
    keys: tuple[bytes, bytes] | None = None  # (EK, AK): HLS-GMAC and ciphered APDUs
    max_pdu: int = MAX_PDU  # a longer GET answer goes in blocks
    counts: dict[str, int] = field(default_factory=dict)
    _link: Association = field(default_factory=lambda: Association(), init=False)

    def __post_init__(self) -> None:
        self.serial = self.serial or self.meter.serial

    @property
    def system_title(self) -> bytes:
        """The meter's system title: "MSE" and its serial number in five octets."""
        return b"MSE" + int(self.meter.serial).to_bytes(5, "big")

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def answer(self, apdu: bytes, link: Association | None = None) -> bytes:
        """The response APDU to one request APDU on the connection whose association is
        `link` (an exception response to a malformed one)."""
        self._link = link if link is not None else self._link  # answer is atomic: no await
        try:
            tag = apdu[0]
            if tag == acse.ApplicationAssociationRequest.TAG:
                return self._associate(acse.ApplicationAssociationRequest.from_bytes(apdu))
            if tag == acse.ReleaseRequest.TAG:
                self._link.associated, self._link.session = False, None
                return _encoded(acse.ReleaseResponse(reason=E.ReleaseResponseReason.NORMAL))
            if tag == xdlms.GeneralGlobalCipher.TAG and self._link.session is not None:
                try:
                    plain = self._link.session.unprotect(apdu)
                except CipherRefused:
                    self._count("deciphering refused")
                    return _exception(E.StateException.SERVICE_NOT_ALLOWED)
                return self._link.session.protect(self._plain(plain))
            if self.keys is not None:  # a ciphering meter answers no plain request
                self._count("refused")
                return _exception(E.StateException.SERVICE_NOT_ALLOWED)
            return self._plain(apdu)
        except (ValueError, KeyError, IndexError, TypeError):
            pass
        self._count("malformed")
        return _exception(E.StateException.SERVICE_UNKNOWN)

    def _plain(self, apdu: bytes) -> bytes:
        tag = apdu[0]
        if not self._link.associated:
            self._count("refused")
            return _exception(E.StateException.SERVICE_NOT_ALLOWED)
        if self._link.session is not None and not self._link.session.proven:  # HLS pass 3 first
            if tag == xdlms.ActionRequestNormal.TAG:
                return self._hls_reply(xdlms.ActionRequestFactory.from_bytes(apdu))
            self._count("refused")
            return _exception(E.StateException.SERVICE_NOT_ALLOWED)
        if tag == xdlms.GetRequestNormal.TAG:
            request = xdlms.GetRequestFactory.from_bytes(apdu)
            if isinstance(request, xdlms.GetRequestNext):
                return self._next_block(request)
            return self._get(request)
        if tag == xdlms.SetRequestNormal.TAG:
            return self._set(xdlms.SetRequestFactory.from_bytes(apdu))
        if tag == xdlms.ActionRequestNormal.TAG:
            return self._action(xdlms.ActionRequestFactory.from_bytes(apdu))
        self._count("malformed")
        return _exception(E.StateException.SERVICE_UNKNOWN)

    def _hls_reply(self, request: Any) -> bytes:
        method = request.cosem_method
        assert self._link.session is not None
        try:
            if (method.instance.to_string(), method.method) != (obis(ASSOCIATION), 1):
                raise CipherRefused("not the reply to the HLS challenge")
            reply = parse_as_dlms_data(request.data)
            answer = self._link.session.check_reply(bytes(reply))
        except CipherRefused:
            self._count("association refused")
            self._link.associated = False
            return _encoded(
                xdlms.ActionResponseNormal(
                    status=E.ActionResultStatus.READ_WRITE_DENIED,
                    invoke_id_and_priority=request.invoke_id_and_priority,
                )
            )
        self._count("associations")
        return _encoded(
            xdlms.ActionResponseNormalWithData(
                status=E.ActionResultStatus.SUCCESS,
                data=_encoded(dlms_data.OctetStringData(answer)),
                invoke_id_and_priority=request.invoke_id_and_priority,
            )
        )

    def _associate(self, aarq: Any) -> bytes:
        self._link.associated, self._link.session = False, None
        if self.keys is not None:
            return self._associate_hls(aarq)
        if aarq.authentication != E.AuthenticationMechanism.LLS or (
            aarq.authentication_value != self.password
        ):
            return self._refuse_association()
        self._link.associated = True
        self._count("associations")
        return self._accept(E.AuthenticationMechanism.LLS, _initiate_response(self.max_pdu))

    def _associate_hls(self, aarq: Any) -> bytes:
        assert self.keys is not None
        session = GmacSession(*self.keys, self.system_title)
        if aarq.authentication != E.AuthenticationMechanism.HLS_GMAC:
            return self._refuse_association()
        try:
            session.open_request(aarq)
        except CipherRefused:
            return self._refuse_association()
        self._link.associated, self._link.session = True, session  # HLS pass 3 still to come
        content = session.initiate_response(_encoded(_initiate_response(self.max_pdu)))
        return self._accept(
            E.AuthenticationMechanism.HLS_GMAC, content, ciphered=True,
            system_title=self.system_title, authentication_value=session.challenge,
        )  # fmt: skip

    def _refuse_association(self) -> bytes:
        self._count("association refused")
        return _encoded(
            acse.ApplicationAssociationResponse(
                result=E.AssociationResult.REJECTED_PERMANENT,
                result_source_diagnostics=E.AcseServiceUserDiagnostics.AUTHENTICATION_FAILED,
            )
        )

    def _accept(self, mechanism: Any, content: Any, **ciphering: Any) -> bytes:
        return _encoded(
            acse.ApplicationAssociationResponse(
                result=E.AssociationResult.ACCEPTED,
                result_source_diagnostics=E.AcseServiceUserDiagnostics.NULL,
                authentication=mechanism,
                user_information=acse.UserInformation(content=content),
                **ciphering,
            )
        )

    def _get(self, request: Any) -> bytes:
        self._link.blocks = []  # a new GET ends any long one still in progress
        attribute = request.cosem_attribute
        code, number = attribute.instance.to_string(), attribute.attribute
        data = self.read(code, number, request.access_selection)
        invoke = request.invoke_id_and_priority
        if data is None:
            self._count("undefined")
            return _encoded(
                xdlms.GetResponseNormalWithError(
                    error=E.DataAccessResult.OBJECT_UNDEFINED, invoke_id_and_priority=invoke
                )
            )
        self._count("gets")
        ciphering = _CIPHER_HEAD if self._link.session is not None else 0
        if 4 + len(data) + ciphering > self.max_pdu:  # too long for one APDU: numbered blocks
            room = self.max_pdu - _BLOCK_HEAD - ciphering
            self._link.blocks = [data[i : i + room] for i in range(0, len(data), room)]
            self._link.block = 0
            return self._send_block(invoke)
        # Get-Response-Normal by hand: the library's GetResponseNormal.to_bytes (25.1.0)
        # appends its invoke id as bytes to a bytearray and fails; its parser reads this.
        head = bytes([xdlms.GetResponseNormal.TAG, E.GetResponseType.NORMAL])
        return head + bytes(invoke.to_bytes()) + b"\x00" + data

    def _next_block(self, request: Any) -> bytes:
        """The block after the one the client acknowledges (IEC 62056-5-3 GET-REQUEST-NEXT)."""
        if not self._link.blocks or request.block_number != self._link.block:
            self._link.blocks = []
            self._count("blocks refused")
            return _encoded(
                xdlms.GetResponseLastBlockWithError(
                    error=E.DataAccessResult.NO_LONG_GET_IN_PROGRESS,
                    block_number=request.block_number,
                    invoke_id_and_priority=request.invoke_id_and_priority,
                )
            )
        return self._send_block(request.invoke_id_and_priority)

    def _send_block(self, invoke: Any) -> bytes:
        self._link.block += 1
        chunk = self._link.blocks.pop(0)
        self._count("get blocks")
        kind = xdlms.GetResponseWithBlock if self._link.blocks else xdlms.GetResponseLastBlock
        return _encoded(
            kind(data=chunk, block_number=self._link.block, invoke_id_and_priority=invoke)
        )

    def read(self, code: str, attribute: int, selection: Any = None) -> bytes | None:
        """The A-XDR encoded value of an object's attribute, or None if the meter has none."""
        now = int(self.meter.now())
        if code == obis(SERIAL) and attribute == 2:
            return bytes(dlms_data.OctetStringData(self.serial.encode()).to_bytes())
        if code == obis(CLOCK) and attribute == 2:
            return _datetime(now)
        energy: dict[str, tuple[Callable[[], int], int]] = {
            obis(ACTIVE_IMPORT): (lambda: self.meter.register_wh(now), UNIT_WH),
            obis(ACTIVE_EXPORT): (lambda: 0, UNIT_WH),
            obis(REACTIVE_IMPORT): (lambda: self.meter.registers().totals[1], UNIT_VARH),
        }
        if code in energy:
            value, unit = energy[code]
            if attribute == 2:
                return bytes(dlms_data.DoubleLongUnsignedData(value()).to_bytes())
            if attribute == 3:
                return _scaler_unit(0, unit)
        for name, (what, scaler, unit) in INSTANTANEOUS.items():
            if code == obis(name):
                if attribute == 3:
                    return _scaler_unit(scaler, unit)
                if attribute == 2:
                    return self._instantaneous(what, scaler)
        if code == obis(LOAD_PROFILE):
            return self._profile(attribute, selection, now)
        if code == obis(DISCONNECT_CONTROL):
            connected = self.meter.load_connected
            if attribute == 2:
                return bytes(dlms_data.BooleanData(connected).to_bytes())
            if attribute == 3:
                return bytes(dlms_data.EnumData(1 if connected else 0).to_bytes())
        return None

    def _instantaneous(self, what: str, scaler: int) -> bytes:
        values = self.meter.instantaneous()
        raw = {
            "voltage": values.voltage[0],
            "current": values.current[0],
            "active_power": values.active_power[-1],
            "power_factor": values.power_factor[-1],
            "frequency": values.frequency[0],
        }[what]
        return bytes(dlms_data.DoubleLongData(round(raw / 10**scaler)).to_bytes())

    def _profile(self, attribute: int, selection: Any, now: int) -> bytes | None:
        if attribute == 3:
            return _encoded(
                dlms_data.DataArray(
                    [_capture(8, CLOCK, 2), _capture(1, STATUS, 2), _capture(3, INTERVAL_ENERGY, 2)]
                )
            )
        if attribute == 4:
            return bytes(dlms_data.DoubleLongUnsignedData(INTERVAL).to_bytes())
        if attribute != 2:
            return None
        last_end = self.meter.last_interval_end()
        first_end = max(self.meter.installed + INTERVAL, last_end - MAX_PROFILE_ENTRIES * INTERVAL)
        if selection is not None:  # entries whose stamp (the interval's end) is in [from, to]
            low = int(selection.from_value.timestamp())
            high = int(selection.to_value.timestamp())
            first_end = max(first_end, -(-low // INTERVAL) * INTERVAL)
            last_end = min(last_end, high // INTERVAL * INTERVAL)
        starts = range(first_end - INTERVAL, last_end, INTERVAL)
        energy = self.meter.energy(starts.start, starts.stop) if len(starts) else []
        status = 0 if self.meter.load_connected else 0x04  # bit 2: the supply is cut off
        entries = [
            dlms_data.DataStructure(
                [
                    dlms_data.OctetStringData(_stamp(start + INTERVAL)),
                    dlms_data.UnsignedIntegerData(status),
                    dlms_data.DoubleLongUnsignedData(wh),
                ]
            )
            for start, wh in zip(starts, energy, strict=True)
        ]
        self._count("profile entries")
        return bytes(dlms_data.DataArray(entries).to_bytes())

    def _set(self, request: Any) -> bytes:
        attribute = request.cosem_attribute
        result = E.DataAccessResult.READ_WRITE_DENIED
        if (attribute.instance.to_string(), attribute.attribute) == (obis(CLOCK), 2):
            value = dlms_data.DlmsDataParser().parse(request.data, limit=1)[0].value
            when, _ = dlms_time.datetime_from_bytes(value)
            self.meter.offset += when.timestamp() - self.meter.now()
            self._count("clock set")
            result = E.DataAccessResult.SUCCESS
        return _encoded(
            xdlms.SetResponseNormal(
                result=result, invoke_id_and_priority=request.invoke_id_and_priority
            )
        )

    def _action(self, request: Any) -> bytes:
        method = request.cosem_method
        status = E.ActionResultStatus.OBJECT_UNDEFINED
        if method.instance.to_string() == obis(DISCONNECT_CONTROL) and method.method in (1, 2):
            self.meter.load_connected = method.method == 2
            self._count("disconnects" if method.method == 1 else "reconnects")
            status = E.ActionResultStatus.SUCCESS
        return _encoded(
            xdlms.ActionResponseNormal(
                status=status, invoke_id_and_priority=request.invoke_id_and_priority
            )
        )


def _initiate_response(max_pdu: int = MAX_PDU) -> Any:
    conformance = Conformance(
        get=True, set=True, action=True, selective_access=True,
        block_transfer_with_get_or_read=True,
    )  # fmt: skip
    return xdlms.InitiateResponse(
        negotiated_conformance=conformance, server_max_receive_pdu_size=max_pdu
    )


def _encoded(apdu_or_data: Any) -> bytes:
    """The library object's encoding."""
    return bytes(apdu_or_data.to_bytes())


def _stamp(unix: int) -> bytes:
    return bytes(dlms_time.datetime_to_bytes(dt.datetime.fromtimestamp(unix, dt.UTC)))


def _datetime(unix: int) -> bytes:
    return bytes(dlms_data.OctetStringData(_stamp(unix)).to_bytes())


def _scaler_unit(scaler: int, unit: int) -> bytes:
    return _encoded(
        dlms_data.DataStructure([dlms_data.IntegerData(scaler), dlms_data.EnumData(unit)])
    )


def _capture(interface: int, code: str, attribute: int) -> Any:
    return dlms_data.DataStructure(
        [
            dlms_data.UnsignedLongData(interface),
            dlms_data.OctetStringData(cosem.Obis.from_string(code).to_bytes()),
            dlms_data.IntegerData(attribute),
            dlms_data.UnsignedLongData(0),
        ]
    )


def _exception(state: Any) -> bytes:
    return _encoded(
        xdlms.ExceptionResponse(
            state_error=state, service_error=E.ServiceException.OPERATION_NOT_POSSIBLE
        )
    )
