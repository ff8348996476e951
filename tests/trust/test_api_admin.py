"""The CAS's administrator API over HTTP, through `trust.admin_client.CasAdmin`: a secret rotated
to a fresh value, a fixed-form secret refused, a measurement revoked (and released nothing
after), an operator refused; every change in the CAS log."""

from __future__ import annotations

import pytest

from meterseal.accounts.model import Role
from meterseal.runtime.http import ThreadedServer
from meterseal.trust.admin_client import CasAdmin, CasRefused
from meterseal.trust.api import create_cas_app
from meterseal.trust.cas import ReleaseRequest, decode_entry
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.measurement import Measurement
from tests.accounts.people import MemoryAccounts, People
from tests.trust.conftest import World

PASSWORD_SECRET = b"0123456789abcdef0123"


@pytest.fixture
def people() -> People:
    """An administrator and an operator."""
    made = People(MemoryAccounts())
    made.add("admin", Role.ADMINISTRATOR)
    made.add("ops", Role.OPERATOR)
    return made


def _events(world: World) -> list[str]:
    return [decode_entry(r.entry)["event"] for r in world.cas.state.log_rows()]


def test_an_administrator_rotates_and_revokes_over_http(
    world: World, people: People, worker_measurement: Measurement
) -> None:
    world.cas.put_secret("db-password", PASSWORD_SECRET)
    world.cas.put_secret("headend-keys", b"not a key bundle")
    world.cas.allow("anonymize-store", worker_measurement, ["db-password"])
    quote, _ = world.quote(worker_measurement)
    world.cas.release(ReleaseRequest("anonymize-store", quote, ("db-password",)))
    with ThreadedServer(create_cas_app(world.cas, people.authenticator)) as url:
        cas, admin = CasAdmin(url), people.token("admin")
        names = {s["name"]: s["latest_version"] for s in cas.secrets(admin)}
        assert names == {"db-password": 1, "headend-keys": 1}
        assert cas.rotate(admin, "db-password").version == 2
        latest = world.cas.state.latest_secret("db-password")
        assert latest is not None
        fresh = world.cas.vault.open("db-password", 2, latest.sealed)
        assert len(fresh) == len(PASSWORD_SECRET)
        assert fresh != PASSWORD_SECRET
        with pytest.raises(CasRefused) as fixed:
            cas.rotate(admin, "headend-keys")
        assert fixed.value.status == 409
        assert "--file" in fixed.value.reason
        with pytest.raises(CasRefused) as unknown:
            cas.rotate(admin, "no-such-secret")
        assert unknown.value.status == 404
        with pytest.raises(CasRefused) as operator:
            cas.rotate(people.token("ops"), "db-password")
        assert operator.value.status == 403
        with pytest.raises(CasRefused) as malformed:
            cas.revoke(admin, "zz" * 32, "")
        assert malformed.value.status == 400
        done = cas.revoke(admin, worker_measurement.hex, "compromised host")
        assert done.new
        assert done.received == (("db-password", 1),)
        assert not cas.revoke(admin, worker_measurement.hex, "again").new
        policies = cas.policies(admin)
        assert [r["measurement"] for r in policies["revoked"]] == [worker_measurement.hex]
    assert len(world.cas.state.secret_infos()) == 2
    assert _events(world).count("secret-added") == 3  # two imports and the one rotation
    assert _events(world).count("measurement-revoked") == 2
    quote, _ = world.quote(worker_measurement)
    with pytest.raises(ReleaseRefused):
        world.cas.release(ReleaseRequest("anonymize-store", quote, ("db-password",)))
