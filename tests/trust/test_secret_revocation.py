"""A revoked secret is released to nobody until it is rotated, in memory and in the store
(SQLite, PostgreSQL); its revocation is in the CAS log and in the API's secrets list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseal.accounts.model import Role
from meterseal.runtime.http import ThreadedServer
from meterseal.storage import Store
from meterseal.trust.admin_client import CasAdmin, CasRefused
from meterseal.trust.api import create_cas_app
from meterseal.trust.cas import BadRequest, ReleaseRequest, check_log, decode_entry
from meterseal.trust.cas_store import CasStore
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.measurement import Measurement
from meterseal.trust.state import MemoryCasState
from tests.accounts.people import MemoryAccounts, People
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures
from tests.trust.conftest import World, make_world

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["memory", "store"])
def kept(request: pytest.FixtureRequest, platform_dir: Path, db_url: str) -> Iterator[World]:  # noqa: F811
    """A CAS over memory, or over a fresh database (db_url: SQLite and PostgreSQL)."""
    if request.param == "memory":
        yield make_world(platform_dir, MemoryCasState())
        return
    with Store.open(db_url) as store:
        yield make_world(platform_dir, CasStore(store))


def _release(world: World, measurement: Measurement) -> dict[str, int]:
    quote, _ = world.quote(measurement)
    done = world.cas.release(ReleaseRequest("anonymize-store", quote, ("db-password",)))
    return {s.name: s.version for s in done.secrets}


def test_a_revoked_secret_is_released_again_only_once_rotated(
    kept: World, worker_measurement: Measurement
) -> None:
    cas = kept.cas
    cas.put_secret("db-password", SECRET)
    cas.allow("anonymize-store", worker_measurement, ["db-password"])
    assert _release(kept, worker_measurement) == {"db-password": 1}
    first = cas.revoke_secret("db-password", "leaked in a ticket")
    assert (first.new, first.version) == (True, 1)
    assert not cas.revoke_secret("db-password", "again").new
    with pytest.raises(ReleaseRefused, match="revoked through version 1"):
        _release(kept, worker_measurement)
    cas.rotate("db-password")
    assert _release(kept, worker_measurement) == {"db-password": 2}
    assert cas.revoke_secret("db-password").version == 2  # a new revocation, further
    with pytest.raises(ReleaseRefused, match="revoked through version 2"):
        _release(kept, worker_measurement)
    with pytest.raises(BadRequest):
        cas.revoke_secret("no-such-secret")
    events = [decode_entry(r.entry) for r in cas.state.log_rows()]
    assert [(e["event"], e["reason"]) for e in events if e["event"] == "secret-revoked"] == [
        ("secret-revoked", "leaked in a ticket"),
        ("secret-revoked", "again"),
        ("secret-revoked", ""),
    ]
    assert check_log(cas.state.log_rows(), cas.vault) == []


def test_an_administrator_revokes_a_secret_over_http(world: World) -> None:
    people = People(MemoryAccounts())
    people.add("admin", Role.ADMINISTRATOR)
    people.add("ops", Role.OPERATOR)
    world.cas.put_secret("db-password", SECRET)
    with ThreadedServer(create_cas_app(world.cas, people.authenticator)) as url:
        cas = CasAdmin(url)
        with pytest.raises(CasRefused) as operator:
            cas.revoke_secret(people.token("ops"), "db-password", "")
        assert operator.value.status == 403
        assert cas.revoke_secret(people.token("admin"), "db-password", "leak").version == 1
        (listed,) = cas.secrets(people.token("admin"))
        assert (listed["latest_version"], listed["revoked_through"]) == (1, 1)
        with pytest.raises(CasRefused) as unknown:
            cas.revoke_secret(people.token("admin"), "nope", "")
        assert unknown.value.status == 404
