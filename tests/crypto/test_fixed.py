"""The single-pass readers (`crypto.fixed`) against the general strict path they stand in for.

The readers may only ever say "not my shape" (None) or produce exactly what the general path
produces. So every property here compares the two paths on the same bytes: honest ones, and
bytes mutated anywhere; refusals must match reason for reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
from collections.abc import Callable, Iterator
from unittest import mock

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.crypto import cose, fixed, packet, reading_codec
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import ED25519, P256, SUITES, CipherSuite
from meterseal.errors import InvalidPacket, RejectReason
from meterseal.model import Reading
from tests.conftest import NOW, World
from tests.crypto.strategies import readings

FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
DIRECT_SUITES = (P256, ED25519)  # the suites whose envelope `fixed.direct_encrypt` reads


@contextlib.contextmanager
def general_path_only() -> Iterator[None]:
    """`packet` as if the fixed-shape readers did not exist (they never recognise anything)."""
    with (
        mock.patch.object(fixed, "direct_encrypt", return_value=None),
        mock.patch.object(fixed, "signed_reading", return_value=None),
    ):
        yield


def outcome(call: Callable[[], packet.OpenedPacket]) -> object:
    """The opened packet, or the refusal's reason."""
    try:
        return call()
    except InvalidPacket as exc:
        return exc.reason


def both_paths(call: Callable[[], packet.OpenedPacket]) -> tuple[object, object]:
    """(outcome with the readers, outcome with the general path alone) of the same call."""
    fast = outcome(call)
    with general_path_only():
        general = outcome(call)
    return fast, general


def _seal(world: World, suite: CipherSuite, reading: Reading) -> bytes:
    key = world.meters[suite.name]
    return packet.seal(reading, key, world.headend.public(), suite, now=NOW, rng=os.urandom)


def _signed(world: World, suite: CipherSuite, reading: Reading) -> bytes:
    return packet.sign_reading(reading, world.meters[suite.name], suite, now=NOW)


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with one byte changed, inserted or removed, or cut short, or extended."""
    kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "append"]))
    at = draw(st.integers(0, len(data) - 1))
    byte = draw(st.integers(0, 255))
    if kind == "set":
        return data[:at] + bytes([byte]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + bytes([byte]) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    return data + bytes([byte])


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_signed_reading_equals_the_general_parse(
    world: World, suite: CipherSuite, data: st.DataObject
) -> None:
    reading = data.draw(readings(world.meters[suite.name].meter_id))
    signed = _signed(world, suite, reading)
    quick = fixed.signed_reading(signed)
    if reading.phasor is not None:
        assert quick is None  # phasor readings take the general path
        return
    assert quick is not None
    general = cose.parse_sign1(signed)
    assert quick.alg == general.headers[cose.ALG] == suite.signature.cose_alg
    assert quick.meter_id == general.headers[cose.KID].decode()
    assert quick.sent_at == general.headers[cose.CWT_CLAIMS][cose.CLAIM_IAT]
    assert quick.signature == general.signature
    assert quick.to_be_signed == general.to_be_signed()
    assert quick.reading == reading_codec.decode_reading(general.payload) == reading


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_direct_encrypt_reads_our_ecdh_envelopes(world: World, data: st.DataObject) -> None:
    suite = data.draw(st.sampled_from(DIRECT_SUITES))
    reading = data.draw(readings(world.meters[suite.name].meter_id))
    blob = _seal(world, suite, reading)
    quick = fixed.direct_encrypt(blob)
    assert quick is not None
    fields = cbor2.loads(blob).value
    assert quick.content_alg == suite.content_alg
    assert quick.protected == fields[0]
    assert quick.iv == fields[1][cose.IV]
    assert quick.ciphertext == fields[2]
    recipient_protected, unprotected, _ = fields[3][0]
    assert quick.recipient_protected == recipient_protected
    assert quick.kid == unprotected[cose.KID] == world.headend.for_suite(suite)[0]
    key = unprotected[cose.EPHEMERAL_KEY]
    expected = key[cose.X] if suite is ED25519 else b"\x04" + key[cose.X] + key[cose.Y]
    assert quick.point == expected
    opened = packet.open(blob, world.headend, world.registry, now=NOW)
    assert opened.reading == reading


def test_other_suites_take_the_general_path(world: World) -> None:
    for name in ("paper", "pq"):
        suite = SUITES[name]
        reading = Reading(world.meters[name].meter_id, 1, 1_793_000_000, 900, 250)
        assert fixed.direct_encrypt(_seal(world, suite, reading)) is None
        assert fixed.signed_reading(_signed(world, suite, reading)) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_open_refuses_every_mutation_as_the_general_path_does(
    world: World, data: st.DataObject
) -> None:
    suite = data.draw(st.sampled_from(DIRECT_SUITES))
    meter_id = world.meters[suite.name].meter_id
    reading = Reading(meter_id, data.draw(st.integers(0, 2**40)), 1_793_000_000, 900, 250)
    blob = data.draw(mutations(_seal(world, suite, reading)))
    fast, general = both_paths(lambda: packet.open(blob, world.headend, world.registry, now=NOW))
    assert fast == general


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_audit_verification_refuses_every_mutation_as_the_general_path_does(
    world: World, data: st.DataObject
) -> None:
    suite = data.draw(st.sampled_from(list(SUITES.values())))
    meter_id = world.meters[suite.name].meter_id
    reading = Reading(meter_id, data.draw(st.integers(0, 2**40)), 1_793_000_000, 900, 250)
    signed = data.draw(mutations(_signed(world, suite, reading)))
    fast, general = both_paths(lambda: packet.verify_signed_original(signed, world.registry))
    assert fast == general
    many = packet.verify_signed_originals([signed, _signed(world, suite, reading)], world.registry)
    first = many[0]
    assert (first if isinstance(first, packet.OpenedPacket) else first.reason) == fast
    assert isinstance(many[1], packet.OpenedPacket)


def _resigned(
    world: World, suite: CipherSuite, protected: dict[int, object], payload: bytes
) -> bytes:
    """A COSE_Sign1 with a valid signature by the suite's meter over arbitrary headers/payload."""
    key = world.meters[suite.name]
    encoded = cbor2.dumps(protected)
    signature = suite.signature.sign(key.private_key, cose.sig_structure1(encoded, payload))
    return cose.Sign1(encoded, {}, {}, payload, signature).encode()


@pytest.mark.parametrize(
    "payload",
    [
        # counter 7 written in two bytes instead of one: valid CBOR, not the canonical form
        b"\xa6\x00\x01\x01\x67M-p256__\x02\x18\x07\x03\x1a\x6a\xdf\x5b\x00\x04\x19\x03\x84\x05\x18\xfa",
        # keys out of order
        b"\xa6\x01\x67M-p256__\x00\x01\x02\x07\x03\x1a\x6a\xdf\x5b\x00\x04\x19\x03\x84\x05\x18\xfa",
        # interval 0: canonical, but not a valid reading
        b"\xa6\x00\x01\x01\x67M-p256__\x02\x07\x03\x1a\x6a\xdf\x5b\x00\x04\x00\x05\x18\xfa",
    ],
    ids=["non-canonical-int", "keys-out-of-order", "zero-interval"],
)
def test_validly_signed_but_refused_readings_are_refused_alike(
    world: World, payload: bytes
) -> None:
    meter_id = world.meters["p256"].meter_id
    payload = payload.replace(b"\x67M-p256__", bytes([0x60 + len(meter_id)]) + meter_id.encode())
    protected = {cose.ALG: -7, cose.KID: meter_id.encode(), cose.CWT_CLAIMS: {6: 1_793_000_000}}
    signed = _resigned(world, P256, protected, payload)
    assert fixed.signed_reading(signed) is None
    fast, general = both_paths(lambda: packet.verify_signed_original(signed, world.registry))
    assert isinstance(fast, RejectReason)
    assert fast == general


def test_a_non_shortest_iat_or_extra_header_takes_the_general_path(world: World) -> None:
    meter_id = world.meters["p256"].meter_id
    payload = reading_codec.encode_reading(Reading(meter_id, 7, 1_793_000_000, 900, 250))
    key = cbor2.dumps({cose.ALG: -7, cose.KID: meter_id.encode(), cose.CWT_CLAIMS: {6: 5}})
    long_iat = key[:-1] + b"\x1a\x00\x00\x00\x05"  # iat 5 written in four bytes
    for protected in (long_iat, cbor2.dumps({cose.ALG: -7, cose.KID: meter_id.encode()})):
        signature = P256.signature.sign(
            world.meters["p256"].private_key, cose.sig_structure1(protected, payload)
        )
        signed = cose.Sign1(protected, {}, {}, payload, signature).encode()
        assert fixed.signed_reading(signed) is None
        fast, general = both_paths(
            functools.partial(packet.verify_signed_original, signed, world.registry)
        )
        assert fast == general


def test_a_non_canonical_x25519_key_is_left_to_the_general_path(world: World) -> None:
    reading = Reading(world.meters["ed25519"].meter_id, 1, 1_793_000_000, 900, 250)
    blob = bytearray(_seal(world, ED25519, reading))
    quick = fixed.direct_encrypt(bytes(blob))
    assert quick is not None
    at = bytes(blob).index(quick.point)
    blob[at : at + 32] = (2**255 - 19 + 1).to_bytes(32, "little")  # 1, written as p + 1
    assert fixed.direct_encrypt(bytes(blob)) is None
    fast, general = both_paths(
        lambda: packet.open(bytes(blob), world.headend, world.registry, now=NOW)
    )
    assert fast == general == RejectReason.MALFORMED


def test_a_packet_for_another_head_end_is_refused_alike(world: World) -> None:
    other = HeadEndKeys.generate()
    for suite in DIRECT_SUITES:
        reading = Reading(world.meters[suite.name].meter_id, 1, 1_793_000_000, 900, 250)
        blob = _seal(world, suite, reading)
        fast, general = both_paths(
            functools.partial(packet.open, blob, other, world.registry, now=NOW)
        )
        assert fast == general == RejectReason.DECRYPT_FAILED


def test_now_outside_the_certificate_is_refused_alike(world: World) -> None:
    reading = Reading(world.meters["p256"].meter_id, 1, 1_793_000_000, 900, 250)
    blob = _seal(world, P256, reading)
    late = NOW + dt.timedelta(days=365 * 50)
    fast, general = both_paths(lambda: packet.open(blob, world.headend, world.registry, now=late))
    assert fast == general == RejectReason.CERTIFICATE_INVALID


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_open_batch_gives_what_open_gives_each_packet(world: World, data: st.DataObject) -> None:
    blobs = []
    for _ in range(data.draw(st.integers(1, 6))):
        suite = data.draw(st.sampled_from(list(SUITES.values())))
        reading = Reading(world.meters[suite.name].meter_id, 1, 1_793_000_000, 900, 250)
        blob = _seal(world, suite, reading)
        blobs.append(data.draw(mutations(blob) | st.just(blob)))
    batch = packet.open_batch(blobs, world.headend, world.registry, now=NOW)
    assert [r if isinstance(r, packet.OpenedPacket) else r.reason for r in batch] == [
        outcome(functools.partial(packet.open, b, world.headend, world.registry, now=NOW))
        for b in blobs
    ]
