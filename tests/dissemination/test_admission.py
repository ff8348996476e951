"""Admission: challenge, attested request, handout; forged requests and replayed handouts."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meterseal.dissemination.admission import AdmissionRequest
from meterseal.dissemination.errors import AdmissionRefused, HandoutRejected, Reason
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.lifecycle import TRANSITIONS, Event, InvalidTransition, State
from meterseal.dissemination.subscription import Subscription, parse
from meterseal.runtime.transitions import Driver, LocalProtocolError, RemoteProtocolError
from meterseal.trust.attestation import SimulatedAttester
from tests.dissemination.conftest import CUSTOMERS, NOW, World, measurement_of

HIGH = PrivacyLevel.HIGH


def _request(world: World, name: str, role: Role, **changes: object) -> AdmissionRequest:
    client = world.client(name, role)
    nonce = world.authority.challenge(name, now=NOW)
    request = client.request(
        nonce, ((HIGH, Subscription()),), attester=world.attester, measurement=measurement_of(role)
    )
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]


def _refused(world: World, request: AdmissionRequest, *, now: float = NOW) -> Reason:
    with pytest.raises(AdmissionRefused) as refused:
        world.authority.admit(request, now=now)
    return refused.value.reason


def test_a_good_request_is_admitted_once(world: World) -> None:
    request = _request(world, "agg", Role.AGGREGATOR)
    handout = world.authority.admit(request, now=NOW)
    assert handout
    assert world.authority.members["agg"].state is State.ADMITTED
    assert "simulated" in world.authority.members["agg"].assurance
    assert _refused(world, request) is Reason.UNKNOWN_CHALLENGE  # the nonce was single-use


def test_a_quote_from_another_platform_is_refused(world: World) -> None:
    other = SimulatedAttester(ed25519.Ed25519PrivateKey.generate())
    client = world.client("agg", Role.AGGREGATOR)
    nonce = world.authority.challenge("agg", now=NOW)
    request = client.request(nonce, attester=other, measurement=measurement_of(Role.AGGREGATOR))
    assert _refused(world, request) is Reason.ATTESTATION_FAILED
    assert "agg" not in world.authority.members  # a refused attempt is forgotten
    assert len(world.authority.challenges) == 0  # and its nonce spent
    assert _refused(world, request) is Reason.UNKNOWN_CHALLENGE


def test_a_quote_for_another_or_a_spent_nonce_is_refused(world: World) -> None:
    first = _request(world, "agg", Role.AGGREGATOR)
    second = world.authority.challenge("agg", now=NOW)  # an attempt of its own
    elsewhere = world.authority.challenge("app", now=NOW)
    assert _refused(world, dataclasses.replace(first, nonce=elsewhere)) is (
        Reason.UNKNOWN_CHALLENGE  # another name's nonce: left for its own requester
    )
    assert _refused(world, dataclasses.replace(first, nonce=second)) is (
        Reason.ATTESTATION_FAILED  # the quote binds the first nonce; the second is spent
    )
    assert world.authority.admit(first, now=NOW)
    assert _refused(world, first) is Reason.UNKNOWN_CHALLENGE
    assert len(world.authority.challenges) == 1  # "app"'s; "agg"'s went with its admission


def test_a_quote_binding_another_key_is_refused(world: World) -> None:
    request = _request(world, "agg", Role.AGGREGATOR)
    other = (
        x25519.X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    assert _refused(world, dataclasses.replace(request, public_key=other)) is Reason.KEY_NOT_BOUND


def test_an_expired_challenge_is_refused(world: World) -> None:
    request = _request(world, "agg", Role.AGGREGATOR)
    assert _refused(world, request, now=NOW + 61) is Reason.EXPIRED_CHALLENGE


def test_an_app_measurement_cannot_claim_the_aggregator_role(world: World) -> None:
    client = world.client("app", Role.AGGREGATOR)
    nonce = world.authority.challenge("app", now=NOW)
    request = client.request(
        nonce, ((HIGH, Subscription()),), attester=world.attester,
        measurement=measurement_of(Role.APP),
    )  # fmt: skip
    assert _refused(world, request) is Reason.MEASUREMENT_NOT_ALLOWED


def test_a_role_cannot_subscribe_above_its_grant(world: World) -> None:
    client = world.client("pub", Role.PUBLIC_APP)
    nonce = world.authority.challenge("pub", now=NOW)
    request = client.request(nonce, ((HIGH, Subscription()),))
    assert _refused(world, request) is Reason.ROLE_NOT_ALLOWED


def test_a_subscription_outside_its_level_is_refused(world: World) -> None:
    request = _request(world, "agg", Role.AGGREGATOR)
    outside = ((HIGH, parse("level = low")),)
    reason = _refused(world, dataclasses.replace(request, subscriptions=outside))
    assert reason is Reason.SUBSCRIPTION_OUTSIDE_LEVEL


def test_admission_without_a_challenge_is_refused(world: World) -> None:
    client = world.client("agg", Role.AGGREGATOR)
    request = client.request(b"\x00" * 32, attester=world.attester,
                             measurement=measurement_of(Role.AGGREGATOR))  # fmt: skip
    assert _refused(world, request) is Reason.UNKNOWN_CHALLENGE


def test_an_admitted_member_must_be_removed_before_applying_again(world: World) -> None:
    world.join("agg", Role.AGGREGATOR, (HIGH, ""))
    with pytest.raises(AdmissionRefused) as refused:
        world.authority.challenge("agg", now=NOW)
    assert refused.value.reason is Reason.INVALID_TRANSITION
    world.network.remove("agg", now=NOW)
    world.join("agg", Role.AGGREGATOR, (HIGH, ""))
    assert world.authority.members["agg"].state is State.ADMITTED


def test_the_request_round_trips_and_garbage_is_refused_with_a_reason() -> None:
    request = AdmissionRequest("m", Role.APP, b"k" * 32, b"n" * 32, b"q", ((HIGH, parse("a=1")),))
    assert AdmissionRequest.decode(request.encode()) == request
    for garbage in (b"", b"\xff", b"\xa0", request.encode()[:-1], "text"):
        with pytest.raises(AdmissionRefused) as refused:
            AdmissionRequest.decode(garbage)
        assert refused.value.reason is Reason.MALFORMED_REQUEST


def test_a_replayed_handout_is_refused(world: World) -> None:
    app = world.join("app", Role.APP, (HIGH, ""))
    handouts = world.authority.grant_consent(CUSTOMERS[0], "app", now=NOW)
    assert [m for m, _ in handouts] == ["app"]
    fresh = handouts[0][1]
    app.accept(fresh)
    with pytest.raises(HandoutRejected) as rejected:
        app.accept(fresh)
    assert rejected.value.reason is Reason.REPLAYED_HANDOUT


def test_a_handout_for_another_member_or_forged_is_refused(world: World) -> None:
    app = world.join("app", Role.APP, (HIGH, ""))
    other = world.join("other", Role.APP, (HIGH, ""))
    handout = world.authority.grant_consent(CUSTOMERS[0], "other", now=NOW)[0][1]
    with pytest.raises(HandoutRejected) as rejected:
        app.accept(handout)
    assert rejected.value.reason is Reason.HANDOUT_NOT_FOR_US
    tampered = bytearray(handout)
    tampered[-70] ^= 1
    with pytest.raises(HandoutRejected) as rejected:
        other.accept(bytes(tampered))
    assert rejected.value.reason is Reason.MALFORMED_HANDOUT
    for garbage in (b"", b"\x80", b"\x84\x01\x40\x40\x40", "x"):
        with pytest.raises(HandoutRejected):
            other.accept(garbage)  # type: ignore[arg-type]
    other.accept(handout)  # the real one still works afterwards


def test_every_transition_of_the_table_and_nothing_else() -> None:
    for state in (None, *State):
        for event in Event:
            if (state, event) in TRANSITIONS:
                assert TRANSITIONS.step(state, event, by=Driver.PEER) is TRANSITIONS[(state, event)]
                continue
            with pytest.raises(InvalidTransition) as refused:
                TRANSITIONS.step(state, event, by=Driver.PEER)
            assert isinstance(refused.value, AdmissionRefused)  # answered to the peer
            assert isinstance(refused.value, RemoteProtocolError)
            assert refused.value.reason is Reason.INVALID_TRANSITION
            with pytest.raises(LocalProtocolError):  # the publisher's own move: its bug
                TRANSITIONS.step(state, event, by=Driver.US)


def test_a_request_with_a_malformed_subscription_is_refused_for_that_reason() -> None:
    import cbor2

    request = AdmissionRequest("m", Role.APP, b"k" * 32, b"n" * 32, b"q")
    value = cbor2.loads(request.encode())
    for bad in (b"\xff", cbor2.dumps([["region", "~", 1]]), cbor2.dumps([["Bad", "=", 1]])):
        value["subscriptions"] = [[3, bad]]
        with pytest.raises(AdmissionRefused) as refused:
            AdmissionRequest.decode(cbor2.dumps(value))
        assert refused.value.reason is Reason.MALFORMED_SUBSCRIPTION


def test_the_keyring_comes_from_the_cas_group_keys_or_not_at_all() -> None:
    import os

    from meterseal.dissemination.errors import CannotDecrypt
    from meterseal.dissemination.groupkeys import (
        derive_level_key,
        epoch_of,
        group_key_secrets,
        keyring_from_secrets,
    )

    secrets = group_key_secrets(os.urandom)
    assert sorted(secrets) == ["group-key/high", "group-key/low", "group-key/moderate"]
    root = secrets["group-key/high"]
    versions = {"group-key/high": 3}
    keyring = keyring_from_secrets(secrets, os.urandom, versions=versions, counter=7)
    first = epoch_of(3, 7)
    assert first == (3 << 48) | 7
    assert keyring.master(PrivacyLevel.HIGH) == (
        first,
        derive_level_key(root, PrivacyLevel.HIGH, first),
    )
    assert keyring.master(PrivacyLevel.LOW)[0] == epoch_of(1, 7)  # version 1 unless told
    # Rotation (a member removed) derives the next epoch's master from the same root.
    assert keyring.rotate(PrivacyLevel.HIGH) == first + 1
    assert keyring.master(PrivacyLevel.HIGH)[1] == derive_level_key(
        root, PrivacyLevel.HIGH, first + 1
    )
    assert keyring.master(PrivacyLevel.HIGH)[1] != derive_level_key(root, PrivacyLevel.HIGH, first)
    # A restart never goes back to an epoch issued before, even with a clock behind.
    again = keyring_from_secrets(
        secrets, os.urandom, versions=versions, counter=2, after=keyring.epochs()
    )
    assert again.master(PrivacyLevel.HIGH)[0] == first + 2
    del secrets["group-key/low"]
    with pytest.raises(CannotDecrypt) as refused:
        keyring_from_secrets(secrets, os.urandom)
    assert refused.value.reason is Reason.NO_KEY
