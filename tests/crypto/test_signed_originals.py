"""The audit's batch verification of signed originals decides exactly as one-at-a-time does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.crypto import certs, packet
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.registry import MeterRecord, MeterRegistry
from meterseal.crypto.suites import P256
from meterseal.errors import InvalidPacket
from meterseal.model import Reading
from tests.conftest import NOW, World

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
instants = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


def _accepts(record: MeterRecord, sent_at: int) -> bool:
    """`_stored_signer`'s rule, in datetimes."""
    sent = dt.datetime.fromtimestamp(sent_at, dt.UTC)
    revoked = record.revoked_at is not None and record.revoked_at <= sent
    return not revoked and record.valid_at(sent)


@settings(max_examples=300, suppress_health_check=FIXTURE_OK)
@given(instants, instants, st.none() | instants, st.integers(-3, 3), st.sampled_from([0, 1, 2]))
def test_the_integer_send_window_is_the_datetime_rule(
    world: World,
    not_before: dt.datetime,
    not_after: dt.datetime,
    revoked_at: dt.datetime | None,
    offset: int,
    edge: int,
) -> None:
    record = world.registry.get(world.meters["p256"].meter_id)
    assert record is not None
    record = dataclasses.replace(
        record, not_before=not_before, not_after=not_after, revoked_at=revoked_at
    )
    first, last = packet._send_window(record)
    # Probe around each boundary, where an off-by-one or a rounding would show.
    around = (not_before, not_after, revoked_at or not_after)[edge]
    sent_at = int(around.timestamp()) + offset
    assert (first <= sent_at <= last) == _accepts(record, sent_at)


def test_a_batch_decides_as_single_verifications_do(world: World) -> None:
    registry = MeterRegistry(world.ca_cert)
    keys = {}
    for meter_id in ("M-kept", "M-revoked"):
        keys[meter_id] = generate_meter_key(meter_id, P256)
        cert = certs.issue_meter_certificate(
            world.ca_key,
            world.ca_cert,
            meter_id,
            keys[meter_id].public_key(),
            now=NOW,
            rng=os.urandom,
        )
        registry.register(cert, P256, "C-1", "R01")
    registry.revoke("M-revoked", now=NOW + dt.timedelta(hours=1))
    stranger = generate_meter_key("M-unknown", P256)
    originals = []
    # Before the certificate, then around the revocation.
    for minutes in (-10_000_000, 0, 59, 60, 61, 120):
        sent = NOW + dt.timedelta(minutes=minutes)
        for key in (*keys.values(), stranger):
            reading = Reading(key.meter_id, minutes + 10_000_000, int(sent.timestamp()), 900, 5)
            originals.append(packet.sign_reading(reading, key, P256, now=sent))
    originals.append(originals[3][:-1] + bytes([originals[3][-1] ^ 1]))  # M-kept at 0, forged

    def single(data: bytes) -> object:
        try:
            return packet.verify_signed_original(data, registry)
        except InvalidPacket as exc:
            return exc.reason

    verified = packet.verify_signed_originals(originals, registry)
    batch = [r.reason if isinstance(r, InvalidPacket) else r for r in verified]
    assert batch == [single(data) for data in originals]
    reasons = {r for r in batch if not isinstance(r, packet.OpenedPacket)}
    assert {r.name for r in reasons} >= {
        "UNKNOWN_METER",
        "REVOKED_METER",
        "CERTIFICATE_INVALID",
        "BAD_SIGNATURE",
    }
    # M-kept from minute 0 on (5), M-revoked at 0 and 59 (2)
    assert sum(isinstance(r, packet.OpenedPacket) for r in batch) == 7
