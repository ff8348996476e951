"""The meter's integrity state reaches the head-end: signed reports, holds, quarantine."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.stages import Incoming, TrustedStages
from meterseal.crypto import certs, cose, packet
from meterseal.crypto.keys import HeadEndKeys, MeterKey, generate_meter_key
from meterseal.crypto.registry import MeterRecord
from meterseal.crypto.suites import ED25519, P256, CipherSuite
from meterseal.errors import RejectReason
from meterseal.integrity.errors import ReportError
from meterseal.integrity.judgement import Verdict
from meterseal.integrity.report import IntegrityReport, sign_report
from meterseal.integrity.state import IntegrityStates
from meterseal.model import Reading
from meterseal.storage import Store, StoreRegistry
from tests.conftest import NOW
from tests.storage.conftest import Authority, authority  # noqa: F401
from tests.storage.databases import db_url, postgres_url  # noqa: F401

T_MS = int(NOW.timestamp() * 1000)


@dataclass
class Head:
    """A store with two registered meters, and their keys."""

    store: Store
    states: IntegrityStates
    authority: Authority
    keys: dict[str, MeterKey]


def _meter(auth: Authority, meter_id: str, suite: CipherSuite) -> tuple[MeterKey, MeterRecord]:
    key = generate_meter_key(meter_id, suite)
    cert = certs.issue_meter_certificate(
        auth.key, auth.certificate, meter_id, key.public_key(), now=NOW, rng=os.urandom
    )
    return key, MeterRecord.from_certificate(meter_id, key.suite, cert, f"C-{meter_id}", "R01")


@pytest.fixture
def head(db_url: str, authority: Authority) -> Iterator[Head]:  # noqa: F811
    keys: dict[str, MeterKey] = {}
    records: list[MeterRecord] = []
    for meter_id, suite in (("M-1", P256), ("M-2", ED25519)):
        key, record = _meter(authority, meter_id, suite)
        keys[meter_id], records = key, [*records, record]
    with Store.open(db_url) as store:
        store.register_meters(records, now=NOW)
        yield Head(store, IntegrityStates(store, authority.certificate), authority, keys)


def _report(meter: str, verdict: Verdict, at_ms: int, reason: str = "r") -> IntegrityReport:
    return IntegrityReport(meter, verdict, reason, "meter", bytes(32), at_ms, 3, bytes(32))


def _signed(head: Head, meter: str, verdict: Verdict, at_ms: int, reason: str = "r") -> bytes:
    return sign_report(_report(meter, verdict, at_ms, reason), head.keys[meter])


def test_a_malicious_verdict_quarantines_the_meter_until_re_verified(
    head: Head, headend: HeadEndKeys
) -> None:
    reason = "behaviour not in the trace (f_d): exec /bin/sh"
    head.states.submit(_signed(head, "M-1", Verdict.MALICIOUS, T_MS, reason), now=NOW)
    assert head.store.integrity_holds() == {"M-1": reason}
    registry = StoreRegistry(head.store, head.authority.certificate)
    assert registry.get("M-1").integrity_hold == reason  # type: ignore[union-attr]
    assert registry.get("M-2").integrity_hold is None  # type: ignore[union-attr]
    stages = TrustedStages(headend, registry, Anonymizer(b"k" * 32))

    def send(meter: str, counter: int) -> list[str]:
        reading = Reading(meter, counter, int(NOW.timestamp()) - 900, 900, 100)
        blob = packet.seal(
            reading,
            head.keys[meter],
            headend.public(),
            head.keys[meter].suite,
            now=NOW,
            rng=os.urandom,
        )
        result = stages.process([Incoming(blob, NOW.timestamp(), "tcp:test")], now=NOW.timestamp())
        return [r.reason for r in result.rejected] or ["accepted"]

    assert send("M-1", 1) == [RejectReason.METER_INTEGRITY.value]
    assert send("M-2", 1) == ["accepted"]
    # The monitor re-verified the meter (a trusted launch measurement): the hold is lifted.
    head.states.submit(_signed(head, "M-1", Verdict.TRUSTED, T_MS + 1, "f_d and f_v hold"), now=NOW)
    registry.refresh()
    assert send("M-1", 2) == ["accepted"]
    states = {s.meter_id: s.verdict for s in head.states.states()}
    assert states == {"M-1": "trusted"}


def test_forged_altered_and_replayed_verdicts_are_refused(head: Head) -> None:
    head.states.submit(_signed(head, "M-1", Verdict.MALICIOUS, T_MS), now=NOW)
    # A "trusted" report for M-1 signed by M-2's key, or by a key never certified.
    forged = sign_report(_report("M-2", Verdict.TRUSTED, T_MS + 5), head.keys["M-2"])
    body = cose.parse_sign1(forged)
    swapped = cose.Sign1(
        body.protected, {}, {}, _report("M-1", Verdict.TRUSTED, T_MS + 5).to_cbor(), body.signature
    ).encode()
    stranger = generate_meter_key("M-1", P256)
    attempts = {
        "payload swapped under M-2's signature": swapped,
        "signed by an uncertified key": sign_report(
            _report("M-1", Verdict.TRUSTED, T_MS + 5), stranger
        ),
        "an old report replayed": _signed(head, "M-1", Verdict.TRUSTED, T_MS - 1),
        "dated in the future": _signed(head, "M-1", Verdict.TRUSTED, T_MS + 3_600_000),
        "not a report": b"\xa0",
    }
    for what, signed in attempts.items():
        with pytest.raises(ReportError):  # noqa: PT012 - `what` names the attempt on failure
            head.states.submit(signed, now=NOW)
            pytest.fail(what)
    assert head.store.integrity_holds() == {"M-1": "r"}


def test_unknown_and_revoked_meters_cannot_report(head: Head, authority: Authority) -> None:  # noqa: F811
    ghost, _ = _meter(authority, "M-9", P256)
    with pytest.raises(ReportError, match="not registered"):
        head.states.submit(sign_report(_report("M-9", Verdict.TRUSTED, T_MS), ghost), now=NOW)
    head.store.revoke_meter("M-2", NOW - dt.timedelta(seconds=1))
    with pytest.raises(ReportError, match="revoked"):
        head.states.submit(_signed(head, "M-2", Verdict.TRUSTED, T_MS), now=NOW)
