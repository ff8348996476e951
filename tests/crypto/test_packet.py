"""seal/open: round trips, tamper resistance and every documented rejection."""

from __future__ import annotations

import datetime as dt
import os

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.crypto import cose, packet, reading_codec
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import ED25519, P256, PAPER, PQ, SUITES, CipherSuite
from meterseal.errors import InvalidPacket, RejectReason
from meterseal.model import Reading
from tests.conftest import NOW, World, seeded_rng
from tests.crypto.strategies import readings

FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def _reading(meter_id: str, counter: int = 1, energy: int = 250) -> Reading:
    return Reading(meter_id, counter, 1_793_000_000, 900, energy)


def _seal(world: World, suite: CipherSuite, reading: Reading | None = None) -> bytes:
    key = world.meters[suite.name]
    return packet.seal(
        reading or _reading(key.meter_id),
        key,
        world.headend.public(),
        suite,
        now=NOW,
        rng=os.urandom,
    )


def _reason(blob: bytes, world: World, **kw: object) -> RejectReason:
    with pytest.raises(InvalidPacket) as info:
        packet.open(blob, kw.get("headend", world.headend), world.registry, now=kw.get("now", NOW))  # type: ignore[arg-type]
    assert str(info.value) == "invalid packet", "the sender-visible text must stay opaque"
    return info.value.reason


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_round_trip_every_suite(world: World, suite: CipherSuite, data: st.DataObject) -> None:
    reading = data.draw(readings(world.meters[suite.name].meter_id))
    opened = packet.open(_seal(world, suite, reading), world.headend, world.registry, now=NOW)
    assert opened.reading == reading
    assert opened.suite is suite
    assert opened.meter.meter_id == reading.meter_id
    assert opened.sent_at == int(NOW.timestamp())
    signed = cose.parse_sign1(opened.signed_original)
    assert signed.payload == reading_codec.encode_reading(reading)
    assert signed.headers[cose.ALG] == suite.signature.cose_alg


def test_packets_use_the_documented_cose_identifiers(world: World) -> None:
    expected = {
        "paper": (96, -257, 1, -41),
        "p256": (96, -7, 1, -25),
        "ed25519": (96, -8, 24, -25),
        "pq": (16, -48, 56, None),
    }
    for name, (tag, sig_alg, content_alg, recipient_alg) in expected.items():
        suite = SUITES[name]
        item = cbor2.loads(_seal(world, suite))
        assert item.tag == tag
        assert cbor2.loads(item.value[0])[cose.ALG] == content_alg
        if recipient_alg is not None:
            recipient = item.value[3][0]
            alg = cbor2.loads(recipient[0])[1] if recipient[0] else recipient[1][1]
            assert alg == recipient_alg
        assert suite.signature.cose_alg == sig_alg


def test_ed25519_suite_is_deterministic_with_injected_rng(world: World) -> None:
    # Ed25519 signatures are deterministic and the ephemeral key and IV come from rng.
    key = world.meters["ed25519"]
    reading = _reading(key.meter_id)
    public = world.headend.public()
    first = packet.seal(reading, key, public, ED25519, now=NOW, rng=seeded_rng(1))
    again = packet.seal(reading, key, public, ED25519, now=NOW, rng=seeded_rng(1))
    other = packet.seal(reading, key, public, ED25519, now=NOW, rng=seeded_rng(2))
    assert first == again != other


def _flip(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("name", ["p256", "ed25519"])
def test_every_single_bit_flip_is_rejected_exhaustively(world: World, name: str) -> None:
    blob = _seal(world, SUITES[name])
    accepted = []
    for bit in range(len(blob) * 8):
        try:
            packet.open(_flip(blob, bit), world.headend, world.registry, now=NOW)
        except InvalidPacket:
            continue
        accepted.append(bit)
    assert accepted == []


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_random_bit_flips_are_rejected_for_every_suite(world: World, data: st.DataObject) -> None:
    suite = data.draw(st.sampled_from([PAPER, P256, ED25519, PQ]))
    blob = _seal(world, suite)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    with pytest.raises(InvalidPacket):
        packet.open(_flip(blob, bit), world.headend, world.registry, now=NOW)


def test_truncated_packets_are_malformed(world: World, suite: CipherSuite) -> None:
    blob = _seal(world, suite)
    for cut in (0, 1, len(blob) // 2, len(blob) - 1):
        assert _reason(blob[:cut], world) is RejectReason.MALFORMED


def test_trailing_bytes_are_malformed(world: World, suite: CipherSuite) -> None:
    assert _reason(_seal(world, suite) + b"\x00", world) is RejectReason.MALFORMED


def test_oversized_packets_are_refused_before_parsing(world: World) -> None:
    assert _reason(b"\xff" * (packet.MAX_PACKET_BYTES + 1), world) is RejectReason.OVERSIZED


def test_garbage_is_malformed(world: World) -> None:
    for junk in (
        b"",
        b"\x00",
        b"hello",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps(cbor2.CBORTag(18, [1])),
    ):
        assert _reason(junk, world) is RejectReason.MALFORMED


def test_unknown_suite_is_refused(world: World) -> None:
    item = cbor2.loads(_seal(world, P256))
    fields = list(item.value)
    fields[0] = cbor2.dumps({1: 3})  # A256GCM: no suite pairs it with ECDH-ES on P-256
    assert _reason(cbor2.dumps(cbor2.CBORTag(96, fields)), world) is RejectReason.UNKNOWN_SUITE


@pytest.fixture(scope="module")
def other_headend() -> HeadEndKeys:
    """A second, unrelated head-end."""
    return HeadEndKeys.generate()


def test_wrong_headend_key_cannot_open(
    world: World, suite: CipherSuite, other_headend: HeadEndKeys
) -> None:
    assert _reason(_seal(world, suite), world, headend=other_headend) is RejectReason.DECRYPT_FAILED


def test_unknown_meter_is_refused(world: World, headend: HeadEndKeys) -> None:
    from meterseal.crypto import certs
    from meterseal.crypto.keys import generate_meter_key

    stranger = generate_meter_key("M-stranger", P256)
    certs.issue_meter_certificate(
        world.ca_key, world.ca_cert, "M-stranger", stranger.public_key(), now=NOW, rng=os.urandom
    )
    blob = packet.seal(
        _reading("M-stranger"), stranger, headend.public(), P256, now=NOW, rng=os.urandom
    )
    assert _reason(blob, world) is RejectReason.UNKNOWN_METER


def test_revoked_meter_is_refused(world: World) -> None:
    key = world.add_meter("M-revoked", ED25519)
    blob = packet.seal(
        _reading(key.meter_id), key, world.headend.public(), ED25519, now=NOW, rng=os.urandom
    )
    packet.open(blob, world.headend, world.registry, now=NOW)  # accepted while valid
    world.registry.revoke(key.meter_id, now=NOW)
    assert _reason(blob, world) is RejectReason.REVOKED_METER


def test_packet_of_meter_a_resigned_by_meter_b_is_refused(world: World) -> None:
    a, b = world.meters["p256"], world.add_meter("M-b", P256)
    # B signs A's reading under its own kid: the signature is valid, the reading is not B's.
    blob = packet.seal(
        _reading(b.meter_id), b, world.headend.public(), P256, now=NOW, rng=os.urandom
    )
    opened = packet.open(blob, world.headend, world.registry, now=NOW)
    forged_reading = cose.dumps({**cbor2.loads(_payload(opened.signed_original)), 1: a.meter_id})
    protected = cose.dumps(
        {1: P256.signature.cose_alg, 4: b.meter_id.encode(), 15: {6: int(NOW.timestamp())}}
    )
    signature = P256.signature.sign(b.private_key, cose.sig_structure1(protected, forged_reading))
    signed = cose.Sign1(protected, {}, {}, forged_reading, signature).encode()
    kid, public = world.headend.public().for_suite(P256)
    forged = P256.encryption.seal(signed, public, kid, os.urandom)
    assert _reason(forged, world) is RejectReason.METER_MISMATCH


def _payload(signed_original: bytes) -> bytes:
    return cose.parse_sign1(signed_original).payload


def test_signature_by_another_meter_under_a_kid_is_refused(world: World) -> None:
    a, b = world.meters["p256"], world.add_meter("M-c", P256)
    protected = cose.dumps(
        {1: P256.signature.cose_alg, 4: a.meter_id.encode(), 15: {6: int(NOW.timestamp())}}
    )
    payload = cose.dumps({0: 1, 1: a.meter_id, 2: 1, 3: 1_793_000_000, 4: 900, 5: 999_999})
    signature = P256.signature.sign(b.private_key, cose.sig_structure1(protected, payload))
    kid, public = world.headend.public().for_suite(P256)
    blob = P256.encryption.seal(
        cose.Sign1(protected, {}, {}, payload, signature).encode(), public, kid, os.urandom
    )
    assert _reason(blob, world) is RejectReason.BAD_SIGNATURE


def test_signature_algorithm_must_match_the_suite(world: World) -> None:
    # An ed25519 meter's Sign1 wrapped in the p256 envelope: refused before any lookup succeeds.
    ed = world.meters["ed25519"]
    inner = packet.seal(
        _reading(ed.meter_id), ed, world.headend.public(), ED25519, now=NOW, rng=os.urandom
    )
    signed = packet.open(inner, world.headend, world.registry, now=NOW).signed_original
    kid, public = world.headend.public().for_suite(P256)
    assert (
        _reason(P256.encryption.seal(signed, public, kid, os.urandom), world)
        is RejectReason.SUITE_MISMATCH
    )


def test_expired_certificate_is_refused(world: World) -> None:
    blob = _seal(world, P256)
    later = NOW + dt.timedelta(days=20 * 365)
    assert _reason(blob, world, now=later) is RejectReason.CERTIFICATE_INVALID


def test_out_of_range_reading_is_bad_reading(world: World) -> None:
    key = world.meters["p256"]
    protected = cose.dumps(
        {1: P256.signature.cose_alg, 4: key.meter_id.encode(), 15: {6: int(NOW.timestamp())}}
    )
    payload = cose.dumps(
        {0: 1, 1: key.meter_id, 2: 1, 3: 1_793_000_000, 4: 0, 5: 10}
    )  # zero interval
    signature = P256.signature.sign(key.private_key, cose.sig_structure1(protected, payload))
    kid, public = world.headend.public().for_suite(P256)
    blob = P256.encryption.seal(
        cose.Sign1(protected, {}, {}, payload, signature).encode(), public, kid, os.urandom
    )
    assert _reason(blob, world) is RejectReason.BAD_READING


def test_seal_refuses_a_reading_of_another_meter(world: World) -> None:
    key = world.meters["p256"]
    with pytest.raises(ValueError, match="belong together"):
        packet.seal(
            _reading("someone-else"), key, world.headend.public(), P256, now=NOW, rng=os.urandom
        )
    with pytest.raises(ValueError, match="belong together"):
        packet.seal(
            _reading(key.meter_id), key, world.headend.public(), ED25519, now=NOW, rng=os.urandom
        )


def test_cbor_true_does_not_pass_for_the_integer_one(world: World) -> None:
    # Rewriting the ephemeral key's crv from 1 to true must not yield a second valid packet.
    item = cbor2.loads(_seal(world, P256))
    recipient = list(item.value[3][0])
    unprotected = dict(recipient[1])
    unprotected[-1] = {**unprotected[-1], -1: True}
    recipient[1] = unprotected
    fields = [item.value[0], dict(item.value[1]), item.value[2], [recipient]]
    assert _reason(cbor2.dumps(cbor2.CBORTag(96, fields)), world) is RejectReason.MALFORMED
    fields = [cbor2.dumps({1: True}), *fields[1:]]
    assert _reason(cbor2.dumps(cbor2.CBORTag(96, fields)), world) is RejectReason.UNKNOWN_SUITE


def test_open_batch_agrees_with_open_packet_by_packet(world: World) -> None:
    good = [_seal(world, suite) for suite in SUITES.values()]
    bad = [b"junk", _flip(good[1], 100), good[2] + b"\x00"]
    batch = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]
    results = packet.open_batch(batch, world.headend, world.registry, now=NOW)
    assert len(results) == len(batch)
    for blob, result in zip(batch, results, strict=True):
        if isinstance(result, InvalidPacket):
            with pytest.raises(InvalidPacket) as info:
                packet.open(blob, world.headend, world.registry, now=NOW)
            assert info.value.reason is result.reason
        else:
            expected = packet.open(blob, world.headend, world.registry, now=NOW)
            assert result.reading == expected.reading
            assert result.signed_original == expected.signed_original
    assert [isinstance(r, InvalidPacket) for r in results] == [
        False,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
