"""The CAS core: release, refusals (modified code, replay, expiry, revocation), rotation, log."""

from __future__ import annotations

import pytest

from meterseal.runtime.transitions import Driver, LocalProtocolError
from meterseal.trust.attestation import SimulatedAttester, init_simulated_platform
from meterseal.trust.cas import (
    TRANSITIONS,
    BadRequest,
    Event,
    ReleaseRequest,
    check_log,
    decode_entry,
)
from meterseal.trust.channel import EphemeralKey, release_info
from meterseal.trust.errors import ReleaseRefused, TrustError
from meterseal.trust.measurement import STAGE_MODULES, Measurement
from meterseal.trust.policy import UnsafeReleaseAll
from meterseal.trust.stages import STAGE_PROVISIONING
from meterseal.trust.state import LogRow, MemoryCasState, NonceState
from meterseal.trust.vault import Vault
from tests.trust.conftest import World

MODIFIED = Measurement(b"\xee" * 32)


def _setup(world: World, measurement: Measurement) -> None:
    world.cas.put_secret("headend-keys", b"the head-end keys")
    world.cas.put_secret("billing-key", b"the billing key")
    world.cas.allow("open-verify", measurement, ["headend-keys"])


def _release(
    world: World, measurement: Measurement, names: tuple[str, ...] = ("headend-keys",)
) -> dict[str, bytes]:
    quote, key = world.quote(measurement)
    release = world.cas.release(ReleaseRequest("open-verify", quote, names))
    nonce = decode_quote_nonce(quote)
    return {
        s.name: key.decrypt(s.sealed, release_info(s.name, s.version, measurement, nonce))
        for s in release.secrets
    }


def decode_quote_nonce(quote: bytes) -> bytes:
    from meterseal.trust.attestation import parse_quote

    return parse_quote(quote).nonce


def _log(world: World) -> list[dict[str, object]]:
    return [decode_entry(r.entry) for r in world.cas.state.log_rows()]


def test_an_allowed_measurement_gets_its_secret_encrypted_to_its_key(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)
    quote, key = world.quote(worker_measurement)
    release = world.cas.release(ReleaseRequest("open-verify", quote, ("headend-keys",)))
    assert release.assurance == "simulated: no hardware guarantee"
    (secret,) = release.secrets
    assert (secret.name, secret.version) == ("headend-keys", 1)
    assert b"the head-end keys" not in secret.sealed
    info = release_info("headend-keys", 1, worker_measurement, decode_quote_nonce(quote))
    assert key.decrypt(secret.sealed, info) == b"the head-end keys"
    with pytest.raises(TrustError, match="does not decrypt"):
        EphemeralKey.generate().decrypt(secret.sealed, info)
    with pytest.raises(TrustError, match="does not decrypt"):
        key.decrypt(secret.sealed, release_info("billing-key", 1, worker_measurement, b"x" * 32))
    entry = _log(world)[-1]
    assert (entry["event"], entry["outcome"], entry["secrets"]) == (
        "release",
        "released",
        [["headend-keys", 1]],
    )
    assert entry["assurance"] == "simulated: no hardware guarantee"


def test_a_missing_policy_is_reported_as_missing_not_as_modified_code(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)  # a rule for open-verify's head-end keys only
    world.cas.put_secret("stage-key", b"the stage link key")
    quote, _ = world.quote(worker_measurement)
    with pytest.raises(ReleaseRefused) as refused:
        world.cas.release(ReleaseRequest("open-verify", quote, ("headend-keys", "stage-key")))
    reason = refused.value.reason
    assert "code modified" not in reason
    assert reason == (
        f"measurement {worker_measurement.hex[:12]}… (stage open-verify) is not allowed secret "
        "'stage-key': no policy lets stage open-verify receive 'stage-key' (missing policy); "
        "add one with `meterseal cas policy add --stage open-verify --secret stage-key`"
    )
    # A stage with no rule at all is missing its policy too, whatever its measurement.
    quote, _ = world.quote(MODIFIED)
    with pytest.raises(ReleaseRefused, match=r"no policy lets stage billing receive 'billing-key'"):
        world.cas.release(ReleaseRequest("billing", quote, ("billing-key",)))
    # Allowed, but never imported: the secret is missing, said as such.
    world.cas.allow("billing", worker_measurement, ["billing-key", "never-imported"])
    quote, _ = world.quote(worker_measurement)
    with pytest.raises(ReleaseRefused, match=r"no secret named 'never-imported' in this CAS"):
        world.cas.release(ReleaseRequest("billing", quote, ("never-imported",)))


def test_a_stage_with_its_own_provisioning_command_is_told_to_run_it(
    world: World, worker_measurement: Measurement
) -> None:
    # CascaDB's rule comes with its bucket keys and TLS identity from `cascadb provision`: a bare
    # `cas policy add` would allow a measurement the secrets it needs are still missing for.
    world.cas.put_secret("cascadb-key", b"a bucket key")
    quote, _ = world.quote(worker_measurement)
    with pytest.raises(ReleaseRefused) as refused:
        world.cas.release(ReleaseRequest("cascadb", quote, ("cascadb-key",)))
    reason = refused.value.reason
    assert reason.endswith(
        "no policy lets stage cascadb receive 'cascadb-key' (missing policy); add one with "
        "`meterseal cascadb provision`"
    )
    assert "cas policy add" not in reason
    # An upgraded gateway is allowed again by its own command, not by `meterseal init`.
    world.cas.put_secret("kvs-master", b"the master secret")
    world.cas.allow("kvs-gateway", worker_measurement, ["kvs-master"])
    quote, _ = world.quote(MODIFIED)
    with pytest.raises(ReleaseRefused) as refused:
        world.cas.release(ReleaseRequest("kvs-gateway", quote, ("kvs-master",)))
    reason = refused.value.reason
    assert "(code modified?)" in reason
    assert reason.endswith("allow it: `meterseal kvs provision`")
    assert "cas policy add" not in reason
    assert "meterseal init" not in reason


def test_every_stage_provisioning_command_is_a_command_of_the_cli() -> None:
    import typer

    from meterseal.cli import app

    for stage, hint in STAGE_PROVISIONING.items():
        command: object = typer.main.get_command(app)
        for word in hint.split("`")[1].split()[1:]:  # `meterseal router provision` (…)
            # typer's groups are its own click's, so a group is told by its subcommands
            subcommands = getattr(command, "commands", None)
            assert subcommands is not None, (stage, hint, word)
            command = subcommands[word]
        assert getattr(command, "commands", None) is None, (stage, hint)
        assert stage in STAGE_MODULES


def test_a_worker_whose_code_was_modified_gets_nothing_and_is_told_why(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)
    quote, _ = world.quote(MODIFIED)
    with pytest.raises(ReleaseRefused) as refused:
        world.cas.release(ReleaseRequest("open-verify", quote, ("headend-keys",)))
    reason = refused.value.reason
    assert reason.startswith(
        f"measurement {MODIFIED.hex[:12]}… (stage open-verify) is not allowed secret "
        "'headend-keys' (code modified?)"
    )
    assert f"the policy lets stage open-verify run as {worker_measurement.hex[:12]}…" in reason
    # The operator who upgraded (or reconfigured) on purpose is told how to allow this build.
    assert "`meterseal init DIR --force`" in reason
    assert "`meterseal cas policy add --stage open-verify --secret headend-keys`" in reason
    assert refused.value.diagnostics() == f"the CAS refused to release secrets: {reason}"
    entry = _log(world)[-1]
    assert (entry["outcome"], entry["measurement"], entry["reason"]) == (
        "refused",
        MODIFIED.hex,
        reason,
    )


def test_a_request_claiming_another_stage_label_gets_nothing_and_both_labels_are_logged(
    world: World, worker_measurement: Measurement
) -> None:
    # The attack: the open-verify measurement, labelled `stage: billing`, asked for the
    # head-end keys and got them (the label was logged, never checked against the rule).
    _setup(world, worker_measurement)
    world.cas.allow("billing", MODIFIED, ["billing-key"])
    quote, _ = world.quote(worker_measurement)
    with pytest.raises(ReleaseRefused) as refused:
        world.cas.release(ReleaseRequest("billing", quote, ("headend-keys",)))
    reason = refused.value.reason
    assert "stage label mismatch: the request claims stage 'billing'" in reason
    assert "secret 'headend-keys' says 'open-verify'" in reason
    entry = _log(world)[-1]
    assert (entry["outcome"], entry["stage"], entry["measurement"], entry["reason"]) == (
        "refused",
        "billing",
        worker_measurement.hex,
        reason,
    )
    assert entry["secrets"] == [["headend-keys", 0]]
    # the same measurement under its own label still gets its secret
    assert _release(world, worker_measurement) == {"headend-keys": b"the head-end keys"}


def test_all_or_nothing_a_secret_not_granted_refuses_the_whole_request(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)
    with pytest.raises(ReleaseRefused, match="not allowed secret 'billing-key'"):
        _release(world, worker_measurement, ("headend-keys", "billing-key"))
    world.cas.allow("open-verify", worker_measurement, ["no-such-secret"])
    with pytest.raises(ReleaseRefused, match="no secret named 'no-such-secret'"):
        _release(world, worker_measurement, ("no-such-secret",))


def test_a_replayed_quote_is_refused(world: World, worker_measurement: Measurement) -> None:
    _setup(world, worker_measurement)
    quote, _ = world.quote(worker_measurement)
    request = ReleaseRequest("open-verify", quote, ("headend-keys",))
    world.cas.release(request)
    with pytest.raises(ReleaseRefused, match="nonce already released: a replayed quote"):
        world.cas.release(request)
    refused_quote, _ = world.quote(MODIFIED)
    refused = ReleaseRequest("open-verify", refused_quote, ("headend-keys",))
    for expected in ("not allowed", "nonce already refused"):
        with pytest.raises(ReleaseRefused, match=expected):
            world.cas.release(refused)


def test_a_stale_or_unknown_nonce_is_refused(world: World, worker_measurement: Measurement) -> None:
    _setup(world, worker_measurement)
    quote, _ = world.quote(worker_measurement)
    world.clock.now += world.cas.nonce_ttl + 1
    request = ReleaseRequest("open-verify", quote, ("headend-keys",))
    with pytest.raises(ReleaseRefused, match="nonce expired"):
        world.cas.release(request)
    with pytest.raises(ReleaseRefused, match="nonce already expired"):
        world.cas.release(request)
    world.clock.now += 3 * world.cas.nonce_ttl
    world.cas.issue_nonce()  # forgets nonces long expired
    with pytest.raises(ReleaseRefused, match="unknown nonce"):
        world.cas.release(request)
    key = EphemeralKey.generate()
    made_up = world.attester.quote(worker_measurement, b"\x07" * 32, key.public_bytes)
    with pytest.raises(ReleaseRefused, match="unknown nonce"):
        world.cas.release(ReleaseRequest("open-verify", made_up, ("headend-keys",)))


def test_a_revoked_measurement_loses_access_at_the_next_rotation(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)
    successor = Measurement(b"\x5a" * 32)
    world.cas.allow("open-verify", successor, ["headend-keys"])
    assert _release(world, worker_measurement) == {"headend-keys": b"the head-end keys"}
    revoked = world.cas.revoke(worker_measurement, "CVE in the parser")
    assert revoked.new
    assert revoked.received == (("headend-keys", 1),)
    assert not world.cas.revoke(worker_measurement).new
    assert world.cas.put_secret("headend-keys", b"rotated head-end keys") == 2
    with pytest.raises(ReleaseRefused, match=f"measurement {worker_measurement.short} is revoked"):
        _release(world, worker_measurement)
    assert _release(world, successor) == {"headend-keys": b"rotated head-end keys"}
    events = [(e["event"], e["outcome"]) for e in _log(world)]
    assert ("measurement-revoked", "done") in events


def test_malformed_requests_are_bad_requests_and_logged(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)
    quote, _ = world.quote(worker_measurement)
    for stage, names, match in (
        ("Open Verify!", ("headend-keys",), "stage names"),
        ("open-verify", (), "1 to 32 secrets"),
        ("open-verify", ("a",) * 33, "1 to 32 secrets"),
        ("open-verify", ("headend-keys", "headend-keys"), "named twice"),
        ("open-verify", ("../etc/passwd",), "secret names"),
    ):
        with pytest.raises(BadRequest, match=match) as refused:
            world.cas.release(ReleaseRequest(stage, quote, names))
        assert refused.value.status == 400
    assert sum(e["outcome"] == "refused" for e in _log(world)) == 5
    # None of them consumed the nonce: the well-formed request still succeeds.
    assert world.cas.release(ReleaseRequest("open-verify", quote, ("headend-keys",))).secrets


def test_quotes_from_unaccepted_backends_or_other_platforms_are_refused(
    world: World, worker_measurement: Measurement, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _setup(world, worker_measurement)
    other = tmp_path_factory.mktemp("other-platform")
    init_simulated_platform(other)
    nonce = world.cas.issue_nonce().nonce
    key = EphemeralKey.generate().public_bytes
    forged = SimulatedAttester.from_deployment(other).quote(worker_measurement, nonce, key)
    with pytest.raises(ReleaseRefused, match=r"quote refused \(platform\)"):
        world.cas.release(ReleaseRequest("open-verify", forged, ("headend-keys",)))
    world.cas.verifiers.clear()
    quote, _ = world.quote(worker_measurement)
    with pytest.raises(ReleaseRefused, match="backend 'simulated' not accepted"):
        world.cas.release(ReleaseRequest("open-verify", quote, ("headend-keys",)))


def test_unsafe_release_all_is_only_an_explicit_extra(world: World) -> None:
    world.cas.put_secret("billing-key", b"k")
    with pytest.raises(ReleaseRefused):
        _release(world, MODIFIED, ("billing-key",))
    world.cas.extra_policy = UnsafeReleaseAll()
    assert _release(world, MODIFIED, ("billing-key",)) == {"billing-key": b"k"}


def test_a_secret_the_cas_cannot_decrypt_fails_the_release_and_is_logged(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)
    world.cas.vault = Vault(b"\x03" * 32)  # the master key file was replaced
    quote, _ = world.quote(worker_measurement)
    request = ReleaseRequest("open-verify", quote, ("headend-keys",))
    with pytest.raises(TrustError, match="does not decrypt under this CAS master key"):
        world.cas.release(request)
    reason = _log(world)[-1]["reason"]
    assert isinstance(reason, str)
    assert reason.startswith("release failed")
    with pytest.raises(ReleaseRefused, match="nonce already refused"):
        world.cas.release(request)


def test_the_transition_table_is_the_protocol() -> None:
    def step(state: NonceState, event: Event) -> NonceState:
        return TRANSITIONS.step(state, event, by=Driver.US)

    assert step(NonceState.ISSUED, Event.QUOTE_IN_TIME) is NonceState.ATTESTED
    assert step(NonceState.ISSUED, Event.QUOTE_LATE) is NonceState.EXPIRED
    assert step(NonceState.ATTESTED, Event.POLICY_ALLOWS) is NonceState.RELEASED
    assert step(NonceState.ATTESTED, Event.POLICY_REFUSES) is NonceState.REFUSED
    assert step(NonceState.ATTESTED, Event.RELEASE_FAILED) is NonceState.REFUSED
    terminal = {NonceState.RELEASED, NonceState.REFUSED, NonceState.EXPIRED}
    for state in terminal:
        for event in Event:  # the CAS drives every event: a refused one is its own bug
            with pytest.raises(LocalProtocolError, match="release cannot"):
                step(state, event)
    assert TRANSITIONS.sources() == {NonceState.ISSUED, NonceState.ATTESTED}


def test_the_log_verifies_and_detects_rewrites(
    world: World, worker_measurement: Measurement
) -> None:
    _setup(world, worker_measurement)
    _release(world, worker_measurement)
    rows = world.cas.state.log_rows()
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert check_log(rows, world.cas.vault) == []
    assert check_log(rows, Vault(b"\x00" * 32))[0].endswith("does not verify (rewritten?)")
    entry = rows[-1].entry.replace(b"released", b"refused!")
    tampered = [*rows[:-1], LogRow(rows[-1].seq, entry, *rows[-1][2:])]
    assert "leaf hash does not match" in check_log(tampered, world.cas.vault)[0]
    assert "expected sequence number" in check_log(rows[1:], world.cas.vault)[0]


def test_secrets_rest_encrypted_under_the_master_key(world: World) -> None:
    world.cas.put_secret("anonymization-key", b"A" * 32)
    stored = world.cas.state.latest_secret("anonymization-key")
    assert stored is not None
    assert b"A" * 32 not in stored.sealed
    assert world.cas.vault.open("anonymization-key", 1, stored.sealed) == b"A" * 32
    with pytest.raises(TrustError, match="does not decrypt"):
        world.cas.vault.open("billing-key", 1, stored.sealed)  # moved to another name
    with pytest.raises(TrustError, match="does not decrypt"):
        Vault(b"\x01" * 32).open("anonymization-key", 1, stored.sealed)
    with pytest.raises(BadRequest, match="1 to"):
        world.cas.put_secret("empty", b"")


def test_memory_state_moves_a_nonce_once() -> None:
    state = MemoryCasState()
    state.add_nonce(b"n" * 32, 0.0, 10.0)
    assert state.move_nonce(b"n" * 32, NonceState.ISSUED, NonceState.ATTESTED)
    assert not state.move_nonce(b"n" * 32, NonceState.ISSUED, NonceState.ATTESTED)
    with pytest.raises(ValueError, match="issued twice"):
        state.add_nonce(b"n" * 32, 0.0, 10.0)
