"""The CAS state in SQLite and PostgreSQL: the same protocol, atomic nonces, a verifiable log."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseal.storage import Store
from meterseal.trust.cas import ReleaseRequest, check_log, decode_entry
from meterseal.trust.cas_store import CasStore
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.measurement import Measurement
from meterseal.trust.state import NonceState
from tests.trust.conftest import World, make_world

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
M1 = Measurement(b"\x01" * 32)


@pytest.fixture
def stored(db_url: str, platform_dir: Path) -> Iterator[World]:
    """A CAS whose state is in a fresh database."""
    with Store.open(db_url) as store:
        yield make_world(platform_dir, CasStore(store))


def test_the_release_protocol_runs_on_the_store(stored: World) -> None:
    cas = stored.cas
    assert cas.put_secret("billing-key", b"v1") == 1
    assert cas.put_secret("billing-key", b"v2") == 2
    cas.allow("billing", M1, ["billing-key"])
    assert cas.allow("billing", M1, ["billing-key"]) == cas.allow("billing", M1, ["billing-key"])
    quote, _key = stored.quote(M1)
    release = cas.release(ReleaseRequest("billing", quote, ("billing-key",)))
    assert [(s.name, s.version) for s in release.secrets] == [("billing-key", 2)]
    with pytest.raises(ReleaseRefused, match="replayed quote"):
        cas.release(ReleaseRequest("billing", quote, ("billing-key",)))
    assert cas.revoke(M1).received == (("billing-key", 2),)
    quote, _ = stored.quote(M1)
    with pytest.raises(ReleaseRefused, match="revoked"):
        cas.release(ReleaseRequest("billing", quote, ("billing-key",)))
    rows = cas.state.log_rows()
    assert check_log(rows, cas.vault) == []
    outcomes = [decode_entry(r.entry)["outcome"] for r in rows]
    assert outcomes.count("released") == 1
    assert outcomes.count("refused") == 2
    assert cas.state.log_rows(after=len(rows) - 3, limit=1) == [rows[-2]]


def test_store_records_round_trip(stored: World) -> None:
    state = stored.cas.state
    assert isinstance(state, CasStore)
    state.add_nonce(b"n" * 32, 1.5, 61.5)
    record = state.nonce(b"n" * 32)
    assert record is not None
    assert record.state is NonceState.ISSUED
    assert (record.issued_at, record.expires_at) == (1.5, 61.5)
    assert state.move_nonce(b"n" * 32, NonceState.ISSUED, NonceState.ATTESTED)
    assert not state.move_nonce(b"n" * 32, NonceState.ISSUED, NonceState.ATTESTED)
    assert state.purge_nonces(100.0) == 1
    assert state.nonce(b"n" * 32) is None
    state.add_secret("a", lambda v: b"sealed-%d" % v, NOW)
    state.add_secret("a", lambda v: b"sealed-%d" % v, NOW + dt.timedelta(days=1))
    state.add_secret("b", lambda v: b"x", NOW)
    infos = state.secret_infos()
    assert [(i.name, i.latest_version, i.versions) for i in infos] == [("a", 2, 2), ("b", 1, 1)]
    assert infos[0].updated_at == NOW + dt.timedelta(days=1)
    latest = state.latest_secret("a")
    assert latest is not None
    assert (latest.version, latest.sealed) == (2, b"sealed-2")
    assert state.add_revocation(M1.digest, NOW, "why")
    assert not state.add_revocation(M1.digest, NOW, "again")
    assert [(r.measurement, r.reason) for r in state.revocations()] == [(M1.digest, "why")]


def test_racing_with_one_quote_releases_once(stored: World) -> None:
    cas = stored.cas
    cas.put_secret("headend-keys", b"k")
    cas.allow("open-verify", M1, ["headend-keys"])
    quote, _ = stored.quote(M1)
    request = ReleaseRequest("open-verify", quote, ("headend-keys",))
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt() -> None:
        start.wait()
        try:
            cas.release(request)
            outcomes.append("released")
        except ReleaseRefused as refused:
            outcomes.append(refused.reason)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("released") == 1, outcomes
    assert all("replayed quote" in o for o in outcomes if o != "released")
    assert check_log(cas.state.log_rows(), cas.vault) == []
