"""Sealed readings: sign (COSE_Sign1), then encrypt to the head-end; open reverses and verifies.

`seal` and `open` are pure: time, randomness and keys are parameters. Every failure in
`open` raises the same opaque InvalidPacket; its `reason` is for server-side counters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cbor2
from cryptography.exceptions import InvalidSignature, InvalidTag

from meterseal.crypto import cose, fixed, reading_codec
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.envelope import ECDH_ES_HKDF_256, EcdhEsHkdf256, Rng, WrongRecipient
from meterseal.crypto.keys import HeadEndKeys, HeadEndPublicKeys, MeterKey
from meterseal.crypto.registry import MeterDirectory, MeterRecord
from meterseal.crypto.suites import CipherSuite, suite_for_headers
from meterseal.errors import InvalidPacket, ReadingError, RejectReason
from meterseal.model import Reading

MAX_PACKET_BYTES = 8192
_SIGN1_LABELS = frozenset({cose.ALG, cose.KID, cose.CWT_CLAIMS})
_CLAIM_LABELS = frozenset({cose.CLAIM_IAT})
# The encoded tag heads a packet must start with (the tag number with its item dropped).
_OUTER_TAG_HEADS = tuple(
    cbor2.dumps(cbor2.CBORTag(tag, 0))[:-1] for tag in (cose.TAG_ENCRYPT0, cose.TAG_ENCRYPT)
)


class OpenedPacket(NamedTuple):
    """A verified reading with its meter, suite, send time and the signed original (COSE_Sign1).

    A tuple rather than a frozen dataclass: one is built for every packet opened or audited.
    """

    reading: Reading
    meter: MeterRecord
    suite: CipherSuite
    sent_at: int
    signed_original: bytes


def seal(
    reading: Reading,
    meter_key: MeterKey,
    headend_public: HeadEndPublicKeys,
    suite: CipherSuite,
    *,
    now: dt.datetime,
    rng: Rng,
) -> bytes:
    """Sign `reading` with the meter's key and encrypt it to the head-end's key for `suite`."""
    signed = sign_reading(reading, meter_key, suite, now=now)
    kid, public_key = headend_public.for_suite(suite)
    return suite.encryption.seal(signed, public_key, kid, rng)


def sign_reading(
    reading: Reading, meter_key: MeterKey, suite: CipherSuite, *, now: dt.datetime
) -> bytes:
    """The meter's COSE_Sign1 over `reading`: the signed original that billing keeps."""
    if meter_key.suite is not suite or reading.meter_id != meter_key.meter_id:
        raise ValueError("reading, meter key and suite must belong together")
    protected = cose.dumps(
        {
            cose.ALG: suite.signature.cose_alg,
            cose.KID: meter_key.meter_id.encode(),
            cose.CWT_CLAIMS: {cose.CLAIM_IAT: int(now.timestamp())},
        }
    )
    payload = reading_codec.encode_reading(reading)
    signature = suite.signature.sign(meter_key.private_key, cose.sig_structure1(protected, payload))
    return cose.Sign1(protected, {}, {}, payload, signature).encode()


def _int_keys(header: Any) -> bool:
    # 5.0 == 5 in a Python dict: a float label would otherwise stand in for an integer one.
    return isinstance(header, cose.MAP_TYPES) and all(type(k) is int for k in header)


def _identify(item: Any) -> tuple[CipherSuite, Sequence[Any]]:
    """Which suite produced this outer message (from its tag and algorithm ids)."""
    if not isinstance(item, cbor2.CBORTag) or not isinstance(item.value, cose.ARRAY_TYPES):
        raise CoseFormatError("not a tagged COSE message")
    fields = item.value
    if len(fields) >= 3 and not _int_keys(fields[1]):
        raise CoseFormatError("unprotected header labels must be integers")
    if item.tag == cose.TAG_ENCRYPT0 and len(fields) == 3:
        content_alg, recipient_alg = cose.envelope_header_map(fields[0]).get(cose.ALG), 0
    elif item.tag == cose.TAG_ENCRYPT and len(fields) == 4:
        content_alg = cose.envelope_header_map(fields[0]).get(cose.ALG)
        recipients = fields[3]
        if not isinstance(recipients, cose.ARRAY_TYPES) or len(recipients) != 1:
            raise CoseFormatError("exactly one recipient")
        recipient = recipients[0]
        if (
            not isinstance(recipient, cose.ARRAY_TYPES)
            or len(recipient) != 3
            or not isinstance(recipient[1], cose.MAP_TYPES)
        ):
            raise CoseFormatError("malformed recipient")
        if not _int_keys(recipient[1]):
            raise CoseFormatError("unprotected header labels must be integers")
        recipient_alg = cose.envelope_header_map(recipient[0]).get(
            cose.ALG, recipient[1].get(cose.ALG)
        )
    else:
        raise CoseFormatError("not a COSE_Encrypt or COSE_Encrypt0")
    # type() rather than isinstance: CBOR true must not pass for the integer 1.
    if type(content_alg) is not int or type(recipient_alg) is not int:
        raise InvalidPacket(RejectReason.UNKNOWN_SUITE)
    suite = suite_for_headers(item.tag, content_alg, recipient_alg)
    if suite is None:
        raise InvalidPacket(RejectReason.UNKNOWN_SUITE)
    return suite, fields


@dataclass(slots=True)
class _Agreed:
    """A packet of the fixed shape whose key agreement is done, its content not yet decrypted."""

    suite: CipherSuite
    scheme: EcdhEsHkdf256
    message: fixed.DirectEncrypt
    shared: bytes


def _refusal(exc: Exception) -> InvalidPacket:
    """The refusal for an error while decrypting (what the sender may learn: one reason)."""
    if isinstance(exc, WrongRecipient):
        return InvalidPacket(RejectReason.DECRYPT_FAILED)
    if isinstance(exc, CoseFormatError):
        return InvalidPacket(RejectReason.MALFORMED)
    # Bad tag, bad OAEP padding, a point off the curve: all "could not decrypt".
    return InvalidPacket(RejectReason.DECRYPT_FAILED)


_DECRYPT_ERRORS = (CoseFormatError, InvalidTag, ValueError, TypeError)


def _agree(blob: bytes, headend_key: HeadEndKeys) -> _Agreed | tuple[CipherSuite, bytes]:
    """Decryption up to the key agreement for the fixed shape; the general path does it all."""
    if len(blob) > MAX_PACKET_BYTES:
        raise InvalidPacket(RejectReason.OVERSIZED)
    try:
        direct = fixed.direct_encrypt(blob)
        if direct is not None:
            suite = suite_for_headers(cose.TAG_ENCRYPT, direct.content_alg, ECDH_ES_HKDF_256)
            if suite is not None and isinstance(suite.encryption, EcdhEsHkdf256):
                kid, private_key = headend_key.for_suite(suite)
                scheme = suite.encryption
                return _Agreed(suite, scheme, direct, scheme.agree_direct(direct, private_key, kid))
        # The COSE tag must come first: the decoder would silently drop a self-describe tag.
        if not blob.startswith(_OUTER_TAG_HEADS):
            raise CoseFormatError("not a tagged COSE message")
        suite, fields = _identify(cose.loads_strict(blob))
        kid, private_key = headend_key.for_suite(suite)
        return suite, suite.encryption.open(fields, private_key, kid)
    except _DECRYPT_ERRORS as exc:
        raise _refusal(exc) from None


def _finish(step: _Agreed | tuple[CipherSuite, bytes]) -> tuple[CipherSuite, bytes]:
    """(suite, signed original) once `_agree`'s packet is decrypted."""
    if not isinstance(step, _Agreed):
        return step
    try:
        return step.suite, step.scheme.finish_direct(step.message, step.shared)
    except _DECRYPT_ERRORS as exc:
        raise _refusal(exc) from None


def _decrypt(blob: bytes, headend_key: HeadEndKeys) -> tuple[CipherSuite, bytes]:
    return _finish(_agree(blob, headend_key))


def _signer(signed: cose.Sign1, suite: CipherSuite) -> tuple[str, int]:
    """(meter id, send time) from the signed headers, before any trust is placed in them."""
    headers = cose.expect_map(signed.headers, _SIGN1_LABELS, _SIGN1_LABELS)
    if signed.unprotected:
        raise CoseFormatError("the signed reading has no unprotected headers")
    if headers[cose.ALG] != suite.signature.cose_alg:
        raise InvalidPacket(RejectReason.SUITE_MISMATCH)
    claims = cose.expect_map(headers[cose.CWT_CLAIMS], _CLAIM_LABELS, _CLAIM_LABELS)
    sent_at = claims[cose.CLAIM_IAT]
    if type(sent_at) is not int:
        raise CoseFormatError("iat must be an integer")
    try:
        meter_id = cose.expect_bytes(headers[cose.KID]).decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise CoseFormatError("kid is not a meter id") from exc
    return meter_id, sent_at


def _meter(
    registry: MeterDirectory, meter_id: str, suite: CipherSuite, now: dt.datetime
) -> MeterRecord:
    record = registry.get(meter_id)
    if record is None:
        raise InvalidPacket(RejectReason.UNKNOWN_METER)
    return check_meter(record, suite, now)


def check_meter(record: MeterRecord, suite: CipherSuite, now: dt.datetime) -> MeterRecord:
    """`record` if it may send with `suite` at `now`; InvalidPacket (revoked, …) otherwise."""
    if record.revoked:
        raise InvalidPacket(RejectReason.REVOKED_METER)
    if record.suite is not suite:
        raise InvalidPacket(RejectReason.SUITE_MISMATCH)
    if not record.valid_at(now):
        raise InvalidPacket(RejectReason.CERTIFICATE_INVALID)
    return record


def _parse_signed(
    signed_bytes: bytes, suite: CipherSuite, quick: fixed.SignedReading | None
) -> fixed.SignedReading:
    """The signed original's parts: `quick` (`fixed.signed_reading`) if it was read, else parsed.

    Raises CoseFormatError (or InvalidPacket for a suite mismatch) as `_signer` does.
    """
    alg = suite.signature.cose_alg
    if quick is not None and quick.alg == alg:
        return quick
    signed = cose.parse_sign1(signed_bytes)
    meter_id, sent_at = _signer(signed, suite)
    return fixed.SignedReading(
        alg, meter_id, sent_at, signed.signature, signed.to_be_signed(), signed.payload, None
    )


@dataclass(slots=True)
class _Signed:
    """A decrypted packet between the phases of opening."""

    suite: CipherSuite
    signed_bytes: bytes
    parsed: fixed.SignedReading
    record: MeterRecord


def _authenticate(
    blob: bytes, headend_key: HeadEndKeys, registry: MeterDirectory, now: dt.datetime
) -> _Signed:
    """Decrypt and identify the signer (no signature check yet)."""
    return _identify_signer(*_decrypt(blob, headend_key), registry, now)


def _identify_signer(
    suite: CipherSuite, signed_bytes: bytes, registry: MeterDirectory, now: dt.datetime
) -> _Signed:
    """The decrypted packet's signer, known and allowed to send at `now` (no signature check)."""
    try:
        parsed = _parse_signed(signed_bytes, suite, fixed.signed_reading(signed_bytes))
    except CoseFormatError:
        raise InvalidPacket(RejectReason.MALFORMED) from None
    record = _meter(registry, parsed.meter_id, suite, now)
    return _Signed(suite, signed_bytes, parsed, record)


def _verify(item: _Signed) -> None:
    try:
        parsed = item.parsed
        item.suite.signature.verify(item.record.public_key, parsed.signature, parsed.to_be_signed)
    except InvalidSignature:
        raise InvalidPacket(RejectReason.BAD_SIGNATURE) from None


def _decode(item: _Signed) -> OpenedPacket:
    parsed = item.parsed
    reading = parsed.reading
    if reading is None:
        assert parsed.payload is not None
        try:
            reading = reading_codec.decode_reading(parsed.payload)
        except CoseFormatError:
            raise InvalidPacket(RejectReason.MALFORMED) from None
        except ReadingError:
            raise InvalidPacket(RejectReason.BAD_READING) from None
    if reading.meter_id != parsed.meter_id:
        raise InvalidPacket(RejectReason.METER_MISMATCH)
    return OpenedPacket(reading, item.record, item.suite, parsed.sent_at, item.signed_bytes)


def open(
    blob: bytes, headend_key: HeadEndKeys, registry: MeterDirectory, *, now: dt.datetime
) -> OpenedPacket:
    """Decrypt, verify the meter signature and decode; InvalidPacket on any failure.

    The signature and the AEAD tag are both checked before the reading is decoded.
    """
    item = _authenticate(blob, headend_key, registry, now)
    _verify(item)
    return _decode(item)


def open_batch(
    blobs: Sequence[bytes], headend_key: HeadEndKeys, registry: MeterDirectory, *, now: dt.datetime
) -> list[OpenedPacket | InvalidPacket]:
    """`open` for many packets, phase by phase; one result (or refusal) per packet, in order.

    Running every key agreement, then every content decryption, then every signature check
    keeps each primitive's code and tables hot in the CPU caches: on the 2-core development
    machine this is worth about ten points of the primitive bound (docs/benchmarks.md).
    """
    agreed: list[_Agreed | tuple[CipherSuite, bytes] | InvalidPacket] = []
    for blob in blobs:  # every key agreement, in one loop
        try:
            agreed.append(_agree(blob, headend_key))
        except InvalidPacket as exc:
            agreed.append(exc)
    results: list[OpenedPacket | InvalidPacket | _Signed] = []
    for step in agreed:
        if isinstance(step, InvalidPacket):
            results.append(step)
            continue
        try:
            results.append(_identify_signer(*_finish(step), registry, now))
        except InvalidPacket as exc:
            results.append(exc)
    return _verify_and_decode(results)


def _verify_and_decode(
    results: list[OpenedPacket | InvalidPacket | _Signed],
) -> list[OpenedPacket | InvalidPacket]:
    """Every signature check, then every decode, in place; refusals stay where they are."""
    for i, item in enumerate(results):
        if isinstance(item, _Signed):
            try:
                _verify(item)
            except InvalidPacket as exc:
                results[i] = exc
    for i, item in enumerate(results):
        if isinstance(item, _Signed):
            try:
                results[i] = _decode(item)
            except InvalidPacket as exc:
                results[i] = exc
    return results  # type: ignore[return-value]


def verify_signed_original(signed_bytes: bytes, registry: MeterDirectory) -> OpenedPacket:
    """Verify a stored signed original (no envelope) as an auditor does; InvalidPacket if not.

    The meter must be known and its certificate must have been valid when the reading was
    sent; a later revocation does not void readings signed before it.
    """
    item = _stored_signer(signed_bytes, registry)
    _verify(item)
    return _decode(item)


def verify_signed_originals(
    originals: Sequence[bytes], registry: MeterDirectory
) -> list[OpenedPacket | InvalidPacket]:
    """`verify_signed_original` for many, phase by phase; one result (or refusal) each, in order.

    As in `open_batch`, every signature is checked in one tight loop, which keeps the
    verification code hot: an audit runs its 2,880 checks as fast as bare ones.
    """
    results: list[OpenedPacket | InvalidPacket | _Signed] = []
    windows: dict[str, tuple[MeterRecord, int, int] | None] = {}
    for signed_bytes in originals:
        try:
            results.append(_windowed_signer(signed_bytes, registry, windows))
        except InvalidPacket as exc:
            results.append(exc)
    return _verify_and_decode(results)


def _windowed_signer(
    signed_bytes: bytes,
    registry: MeterDirectory,
    windows: dict[str, tuple[MeterRecord, int, int] | None],
) -> _Signed:
    """`_stored_signer`, with each meter's record and send window looked up once per batch.

    A reading in our meters' shape, sent inside its meter's window, is accepted on two integer
    comparisons; anything else takes `_stored_signer`, which alone decides refusals.
    """
    quick = fixed.signed_reading(signed_bytes)
    if quick is not None:
        meter_id = quick.meter_id
        if meter_id not in windows:
            record = registry.get(meter_id)
            windows[meter_id] = None if record is None else (record, *_send_window(record))
        known = windows[meter_id]
        if known is not None:
            record, first, last = known
            if first <= quick.sent_at <= last and quick.alg == record.suite.signature.cose_alg:
                return _Signed(record.suite, signed_bytes, quick, record)
    return _stored_signer(signed_bytes, registry)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _send_window(record: MeterRecord) -> tuple[int, int]:
    """The first and last whole second at which `_stored_signer` accepts the meter's readings.

    Exact integer arithmetic on microseconds: not_before <= sent <= not_after, and sent before
    any revocation (a reading sent at or after it is refused).
    """
    first = _epoch_seconds(record.not_before, ceil=True)
    last = _epoch_seconds(record.not_after, ceil=False)
    if record.revoked_at is not None:
        last = min(last, _epoch_seconds(record.revoked_at, ceil=True) - 1)
    return first, last


def _epoch_seconds(instant: dt.datetime, *, ceil: bool) -> int:
    """Whole seconds since the epoch of `instant`, rounded up or down, exactly."""
    micros = (instant - _EPOCH) // _MICROSECOND
    return -(-micros // 1_000_000) if ceil else micros // 1_000_000


def _stored_signer(signed_bytes: bytes, registry: MeterDirectory) -> _Signed:
    """A stored original's signer, checked as `verify_signed_original` says (no signature yet)."""
    quick = fixed.signed_reading(signed_bytes)
    try:
        meter_id = quick.meter_id if quick is not None else _kid(cose.parse_sign1(signed_bytes))
    except CoseFormatError:
        raise InvalidPacket(RejectReason.MALFORMED) from None
    record = registry.get(meter_id)
    if record is None:
        raise InvalidPacket(RejectReason.UNKNOWN_METER)
    try:
        parsed = _parse_signed(signed_bytes, record.suite, quick)
        sent = dt.datetime.fromtimestamp(parsed.sent_at, dt.UTC)
    except (CoseFormatError, OverflowError, OSError, ValueError):
        raise InvalidPacket(RejectReason.MALFORMED) from None
    if record.revoked_at is not None and record.revoked_at <= sent:
        raise InvalidPacket(RejectReason.REVOKED_METER)
    if not record.valid_at(sent):
        raise InvalidPacket(RejectReason.CERTIFICATE_INVALID)
    return _Signed(record.suite, signed_bytes, parsed, record)


def _kid(signed: cose.Sign1) -> str:
    try:
        return cose.expect_bytes(signed.headers.get(cose.KID)).decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise CoseFormatError("kid is not a meter id") from exc
