"""A labelled corpus of bad input for any transport, and the scenario that runs it.

Packets (`build_corpus`) are transport-independent: each `BadPacket` names the reason the
trusted stages (or the store) must count it under. Frames (`bad_frames`) are TCP-only: they
break the length-prefixed framing and never reach the stages.

The corpus has its own deployment (`CorpusDeployment`): the session-wide `World` CA and
head-end, but a fresh `MeterRegistry` on `world.ca_cert` holding only the corpus's meters.
Revoking a meter, or registering one whose certificate is not yet valid, therefore never
touches `world.registry` (which the World fixture says tests must not mutate), and the corpus
does not depend on what other tests did to the World's meters. The stages under test must
use `deployment.registry` (`deployment.stages()` builds them) and a clock fixed at the `now`
the corpus was built for (`Ingest(..., clock=lambda: now.timestamp())`).

`run_corpus` takes any `MeterLink`, so the same scenario runs over TCP, MQTT and HTTP.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cbor2

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.freshness import FreshnessPolicy
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.links import MeterLink
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.stages import TrustedStages
from meterseal.crypto import certs, cose, packet, reading_codec
from meterseal.crypto.keys import HeadEndKeys, MeterKey, generate_meter_key
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import ED25519, P256, CipherSuite
from meterseal.errors import RejectReason
from meterseal.model import Reading
from tests.conftest import World

_LENGTH = struct.Struct(">I")
INTERVAL = 900
# Counters of the replay meter's accepted reading, and of the corpus's own bad packets (far
# from the good traffic's counters, so a mislabelled case cannot collide with a good one).
REPLAY_COUNTER = 5_000
BAD_COUNTERS = 900_000


@dataclass(frozen=True)
class BadPacket:
    """One bad packet, the reason it must be counted under, and what must be accepted first.

    `prelude` holds good packets that must be ACCEPTED (durable) before `data` is sent: a
    replay is only a replay once the original is stored.
    """

    label: str
    data: bytes
    expected_reason: str
    prelude: tuple[bytes, ...] = ()

    @property
    def via_store(self) -> bool:
        """Refused by the store's CONFLICT outcome, not by a stage.

        The stages pass a same-counter, other-content packet on (it may be an honest
        duplicate); the store finds the conflict and `TrustedStages.stored` counts it.
        `MemorySink` does not quarantine conflicts (the SQL store does).
        """
        return self.expected_reason == RejectReason.REPLAYED_COUNTER.value


@dataclass(frozen=True)
class BadFrame:
    """Bytes that break TCP framing on one connection, and what the receiver must do.

    `acks` are the replies due before the receiver closes the connection (for the complete
    frames in front of the bad one); `counter` is the `TcpReceiver.counts` key it raises.
    `half_close=False` leaves the connection open so that a receiver timeout must close it.
    """

    label: str
    data: bytes
    counter: str
    acks: tuple[Ack, ...] = ()
    half_close: bool = True


@dataclass
class CorpusDeployment:
    """The corpus's meters and registry on the World's CA and head-end (see the module doc)."""

    headend: HeadEndKeys
    registry: MeterRegistry
    meters: dict[str, MeterKey]
    stranger: MeterKey  # certified by the CA, never registered
    policy: FreshnessPolicy = field(default_factory=FreshnessPolicy)

    def stages(self) -> TrustedStages:
        """Trusted stages that open packets with this deployment's registry and policy."""
        return TrustedStages(self.headend, self.registry, Anonymizer(b"c" * 32), self.policy)


def corpus_deployment(
    world: World, *, now: dt.datetime, policy: FreshnessPolicy | None = None
) -> CorpusDeployment:
    """Fresh corpus meters in a registry of their own; one revoked, one not yet valid."""
    registry = MeterRegistry(world.ca_cert)

    def provision(meter_id: str, suite: CipherSuite, issued: dt.datetime = now) -> MeterKey:
        key = generate_meter_key(meter_id, suite)
        cert = certs.issue_meter_certificate(
            world.ca_key, world.ca_cert, meter_id, key.public_key(), now=issued, rng=os.urandom
        )
        registry.register(cert, suite, f"CUST-{meter_id}", "R-corpus")
        return key

    meters = {
        "good": provision("C-good", P256),  # good traffic, and bad packets it signs itself
        "replay": provision("C-replay", P256),  # its REPLAY_COUNTER is accepted first
        "clock": provision("C-clock", P256),  # readings outside the time window
        "ed": provision("C-ed", ED25519),  # a second suite's signer
        "revoked": provision("C-revoked", ED25519),
        "early": provision("C-early", P256, issued=now + dt.timedelta(days=1)),
        "held": provision("C-held", P256),  # its integrity monitor judged it malicious
    }
    registry.revoke("C-revoked", now=now)
    registry.hold("C-held", "code in memory differs from the file")
    stranger = generate_meter_key("C-stranger", P256)
    certs.issue_meter_certificate(
        world.ca_key, world.ca_cert, "C-stranger", stranger.public_key(), now=now, rng=os.urandom
    )
    return CorpusDeployment(world.headend, registry, meters, stranger, policy or FreshnessPolicy())


def _reading(
    key: MeterKey,
    counter: int,
    now: dt.datetime,
    *,
    timestamp: int | None = None,
    energy_wh: int = 7,
) -> Reading:
    """A reading of the interval just ended at `now` unless `timestamp` says otherwise."""
    start = int(now.timestamp()) - INTERVAL if timestamp is None else timestamp
    return Reading(key.meter_id, counter, start, INTERVAL, energy_wh)


def _seal(d: CorpusDeployment, key: MeterKey, reading: Reading, now: dt.datetime) -> bytes:
    return packet.seal(reading, key, d.headend.public(), key.suite, now=now, rng=os.urandom)


def _sign1(
    signer: MeterKey,
    payload: bytes,
    *,
    now: dt.datetime,
    kid: str | None = None,
    flip_signature: bool = False,
) -> bytes:
    """A COSE_Sign1 built by hand: any kid, optionally with a corrupted signature."""
    protected = cose.dumps(
        {
            cose.ALG: signer.suite.signature.cose_alg,
            cose.KID: (kid or signer.meter_id).encode(),
            cose.CWT_CLAIMS: {cose.CLAIM_IAT: int(now.timestamp())},
        }
    )
    signature = bytearray(
        signer.suite.signature.sign(signer.private_key, cose.sig_structure1(protected, payload))
    )
    if flip_signature:
        signature[-1] ^= 0x01
    return cose.Sign1(protected, {}, {}, payload, bytes(signature)).encode()


def _envelope(d: CorpusDeployment, signed: bytes, suite: CipherSuite) -> bytes:
    """`signed` encrypted to the head-end in `suite`'s envelope (so only the inside is wrong)."""
    kid, public = d.headend.public().for_suite(suite)
    return suite.encryption.seal(signed, public, kid, os.urandom)


def _rewrite(blob: bytes, edit: str) -> bytes:
    """A sealed COSE_Encrypt with one outer field changed, re-encoded."""
    item = cbor2.loads(blob)
    fields = list(item.value)
    if edit == "content_alg":
        fields[0] = cose.dumps({cose.ALG: 3})  # A256GCM: no suite pairs it with ECDH-ES P-256
    elif edit == "ciphertext":
        ciphertext = bytearray(fields[2])
        ciphertext[len(ciphertext) // 2] ^= 0x80
        fields[2] = bytes(ciphertext)
    elif edit == "recipient_kid":
        recipient = list(fields[3][0])
        recipient[1] = {**recipient[1], cose.KID: b"\x00" * 8}
        fields[3] = [recipient]
    else:
        raise ValueError(edit)
    return cbor2.dumps(cbor2.CBORTag(item.tag, fields))


def build_corpus(d: CorpusDeployment, *, now: dt.datetime) -> list[BadPacket]:
    """Every kind of bad packet the stages and store must refuse, one reason each."""
    good, replay, clock, ed = (d.meters[k] for k in ("good", "replay", "clock", "ed"))
    n = BAD_COUNTERS
    honest = _seal(d, good, _reading(good, n, now), now)  # never sent as is
    original = _seal(d, replay, _reading(replay, REPLAY_COUNTER, now, energy_wh=7), now)
    reading_bytes = reading_codec.encode_reading(_reading(good, n + 1, now))
    mismatched = reading_codec.encode_reading(_reading(replay, n + 2, now))
    zero_interval = cose.dumps(
        {0: 1, 1: good.meter_id, 2: n + 3, 3: int(now.timestamp()), 4: 0, 5: 10}
    )
    p256_signed = _sign1(good, reading_bytes, now=now)
    ed_under_p256_kid = _sign1(ed, reading_bytes, now=now, kid=good.meter_id)
    malformed, decrypt_failed = RejectReason.MALFORMED.value, RejectReason.DECRYPT_FAILED.value
    suite_mismatch = RejectReason.SUITE_MISMATCH.value
    window = d.policy.window
    max_age, max_skew = d.policy.max_age_seconds, d.policy.max_skew_seconds
    cases = [
        BadPacket("garbage", b"\x00junk: not CBOR at all", malformed),
        BadPacket("cbor_not_cose", cbor2.dumps([1, 2, 3]), malformed),
        BadPacket("truncated", honest[: len(honest) // 2], malformed),
        BadPacket("trailing_bytes", honest + b"\x00", malformed),
        BadPacket(
            "unknown_suite", _rewrite(honest, "content_alg"), RejectReason.UNKNOWN_SUITE.value
        ),
        BadPacket("tampered_ciphertext", _rewrite(honest, "ciphertext"), decrypt_failed),
        BadPacket("other_headend_kid", _rewrite(honest, "recipient_kid"), decrypt_failed),
        # A p256 meter's ES256-signed reading in the ed25519 (X25519) envelope.
        BadPacket("p256_in_ed25519_envelope", _envelope(d, p256_signed, ED25519), suite_mismatch),
        # A consistent ed25519 packet, but under the kid of a meter registered for p256.
        BadPacket(
            "ed25519_under_p256_meter", _envelope(d, ed_under_p256_kid, ED25519), suite_mismatch
        ),
        BadPacket(
            "forged_signature",
            _envelope(d, _sign1(good, reading_bytes, now=now, flip_signature=True), P256),
            RejectReason.BAD_SIGNATURE.value,
        ),
        BadPacket(
            "signed_by_another_meter",
            _envelope(d, _sign1(replay, reading_bytes, now=now, kid=good.meter_id), P256),
            RejectReason.BAD_SIGNATURE.value,
        ),
        BadPacket(
            "unknown_meter",
            _seal(d, d.stranger, _reading(d.stranger, n, now), now),
            RejectReason.UNKNOWN_METER.value,
        ),
        BadPacket(
            "revoked_meter",
            _seal(d, d.meters["revoked"], _reading(d.meters["revoked"], n, now), now),
            RejectReason.REVOKED_METER.value,
        ),
        BadPacket(
            "integrity_hold",
            _seal(d, d.meters["held"], _reading(d.meters["held"], n, now), now),
            RejectReason.METER_INTEGRITY.value,
        ),
        BadPacket(
            "certificate_not_yet_valid",
            _seal(d, d.meters["early"], _reading(d.meters["early"], n, now), now),
            RejectReason.CERTIFICATE_INVALID.value,
        ),
        BadPacket(
            "reading_of_another_meter",
            _envelope(d, _sign1(good, mismatched, now=now), P256),
            RejectReason.METER_MISMATCH.value,
        ),
        BadPacket(
            "zero_interval",
            _envelope(d, _sign1(good, zero_interval, now=now), P256),
            RejectReason.BAD_READING.value,
        ),
        BadPacket(
            "same_counter_other_content",
            _seal(d, replay, _reading(replay, REPLAY_COUNTER, now, energy_wh=9_999), now),
            RejectReason.REPLAYED_COUNTER.value,
            prelude=(original,),
        ),
        BadPacket(
            "counter_below_window",
            _seal(d, replay, _reading(replay, REPLAY_COUNTER - window, now), now),
            RejectReason.STALE_COUNTER.value,
            prelude=(original,),
        ),
        BadPacket(
            "future_timestamp",
            _seal(d, clock, _reading(clock, n, now, timestamp=int(now.timestamp()) + 86_400), now),
            RejectReason.FUTURE_TIMESTAMP.value,
        ),
        BadPacket(
            "stale_timestamp",
            _seal(
                d,
                clock,
                _reading(clock, n + 1, now, timestamp=int(now.timestamp()) - 10 * max_age),
                now,
            ),
            RejectReason.STALE_TIMESTAMP.value,
        ),
    ]
    assert max_skew < 86_400, "future_timestamp needs a skew bound below a day"
    assert len({c.data for c in cases}) == len(cases), "every bad packet must be distinct"
    return cases


def good_packets(d: CorpusDeployment, counters: Iterable[int], *, now: dt.datetime) -> list[bytes]:
    """Honest packets of the corpus's good meter (counters well below BAD_COUNTERS)."""
    key = d.meters["good"]
    return [_seal(d, key, _reading(key, c, now, energy_wh=100 + c), now) for c in counters]


def bad_frames(good: bytes, *, max_frame: int) -> list[BadFrame]:
    """TCP framing faults; `good` is one acceptable packet (sent before a bad header)."""
    frame = _LENGTH.pack(len(good)) + good
    return [
        BadFrame("length_over_limit", _LENGTH.pack(max_frame + 1) + b"x" * 16, "oversized_frame"),
        BadFrame("length_4gib", b"\xff\xff\xff\xff", "oversized_frame"),
        BadFrame("zero_length", _LENGTH.pack(0) + good, "empty_frame"),
        BadFrame("truncated_body", _LENGTH.pack(100) + b"short", "truncated_frame"),
        BadFrame("truncated_header", b"\x00\x00", "truncated_frame"),
        BadFrame(
            "good_then_over_limit",
            frame + _LENGTH.pack(max_frame + 1),
            "oversized_frame",
            acks=(Ack.ACCEPTED,),
        ),
        BadFrame("slow_peer", _LENGTH.pack(200) + b"x" * 10, "slow_peer", half_close=False),
    ]


@dataclass
class CorpusRun:
    """What `run_corpus` saw: the ack of every bad packet and of the good traffic."""

    bad_acks: dict[str, Ack]
    good_acks: list[Ack]
    quarantined: dict[str, str]  # label -> reason in the sink's quarantine


def _stored_key(
    d: CorpusDeployment, blob: bytes, now: dt.datetime
) -> tuple[tuple[str, int], bytes]:
    opened = packet.open(blob, d.headend, d.registry, now=now)
    return (opened.reading.meter_id, opened.reading.counter), opened.signed_original


async def _exchange(
    link: MeterLink, meter_id: str, packets: Sequence[bytes], timeout: float, chunk: int | None
) -> list[Ack]:
    acks: list[Ack] = []
    step = chunk or max(len(packets), 1)
    for start in range(0, len(packets), step):
        part = packets[start : start + step]
        got = await link.exchange(meter_id, part, timeout)
        assert len(got) == len(part), f"{len(part)} packets sent, {len(got)} acks back"
        acks += got
    return acks


async def run_corpus(
    link: MeterLink,
    ingest: Ingest,
    sink: MemorySink,
    deployment: CorpusDeployment,
    corpus: Sequence[BadPacket],
    good: Sequence[bytes],
    *,
    now: dt.datetime,
    timeout: float = 30.0,
    chunk: int | None = None,
) -> CorpusRun:
    """Send the corpus interleaved with `good` over `link`; assert every verdict.

    First the preludes (must be ACCEPTED), then good[0], bad[0], good[1], bad[1], ... and the
    remaining good packets, in exchanges of at most `chunk` packets (default: one exchange).
    Asserts: each bad packet REJECTED and counted under exactly its reason (per packet in the
    sink's quarantine, in total in `ingest.stages.counts`), each good packet ACCEPTED and
    stored, and a replayed counter still holds its original. Counts are compared as deltas,
    so `ingest` and `sink` may have seen traffic before.
    """
    assert ingest.stages.registry is deployment.registry, "stages must use the corpus registry"
    assert ingest.sink is sink
    assert abs(ingest.clock() - now.timestamp()) < 60, "ingest clock must be the corpus's now"
    sender = deployment.meters["good"].meter_id
    counts_before = Counter(ingest.stages.counts)
    quarantined_before = len(sink.quarantine)

    preludes = list(dict.fromkeys(p for bad in corpus for p in bad.prelude))
    prelude_acks = await _exchange(link, sender, preludes, timeout, chunk)
    assert prelude_acks == [Ack.ACCEPTED] * len(preludes), f"prelude acks {prelude_acks}"

    stream: list[tuple[str | None, bytes]] = []
    for i in range(max(len(good), len(corpus))):
        if i < len(good):
            stream.append((None, good[i]))
        if i < len(corpus):
            stream.append((corpus[i].label, corpus[i].data))
    acks = await _exchange(link, sender, [data for _, data in stream], timeout, chunk)
    bad_acks = {label: ack for (label, _), ack in zip(stream, acks, strict=True) if label}
    good_acks = [ack for (label, _), ack in zip(stream, acks, strict=True) if label is None]
    wrong_acks = {label: ack for label, ack in bad_acks.items() if ack is not Ack.REJECTED}
    assert not wrong_acks, f"bad packets not rejected: {wrong_acks}"
    assert good_acks == [Ack.ACCEPTED] * len(good), f"good acks {good_acks}"

    # Every good packet (and prelude) is stored with its own signed original.
    for blob in [*preludes, *good]:
        key, original = _stored_key(deployment, blob, now)
        assert sink.originals.get(key) == original, f"good packet {key} not stored"

    # Per packet: the quarantine holds each stage-refused packet under its expected reason.
    new = sink.quarantine[quarantined_before:]
    by_bytes = {r.packet: r.reason for r in new}
    quarantined = {bad.label: by_bytes[bad.data] for bad in corpus if bad.data in by_bytes}
    expected_q = {bad.label: bad.expected_reason for bad in corpus if not bad.via_store}
    assert quarantined == expected_q, f"quarantine {quarantined} != expected {expected_q}"
    assert len(new) == len(expected_q), f"{len(new)} quarantined, {len(expected_q)} expected"

    # In total: the stage counters moved by exactly the corpus's reasons.
    delta = Counter(ingest.stages.counts)
    delta.subtract(counts_before)
    stored = delta.pop("stored", 0)
    delta.pop("duplicate", 0)
    expected_counts = Counter(bad.expected_reason for bad in corpus)
    assert +delta == expected_counts, f"stage counts {+delta} != expected {expected_counts}"
    assert stored == len(preludes) + len(good), f"{stored} stored"

    # A conflicting replay must not replace what was stored first.
    for bad in corpus:
        if bad.via_store:
            for original_blob in bad.prelude:
                key, original = _stored_key(deployment, original_blob, now)
                assert sink.originals[key] == original, f"{bad.label} replaced {key}"
    return CorpusRun(bad_acks, good_acks, quarantined)
