"""The administrator's changes from the portal: provisioning a meter, publishing a tariff, rotating
a CAS secret and revoking a measurement (through the CAS's own HTTP API), each in the
hash-chained change log; bad input said on the form; an operator or a customer refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from meterseal.accounts.changes import DONE, Change, ChangeRequest, check_chain
from meterseal.crypto.certs import create_ca, issue_meter_certificate
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.suites import ED25519, P256, CipherSuite
from meterseal.errors import StorageError
from meterseal.meter.enrolment import Enrolment
from meterseal.portal import admin_tools
from meterseal.portal.admin_tools import AdminTools
from meterseal.portal.app import CSRF_COOKIE, SESSION_COOKIE, PublishedKeys, create_portal_app
from meterseal.runtime.http import ThreadedServer
from meterseal.storage.admin_changes import ChangeStore
from meterseal.storage.bill_store import BillStore
from meterseal.storage.fleet import FleetStore
from meterseal.storage.store import StoreRegistry
from meterseal.trust.admin_client import CasAdmin
from meterseal.trust.api import create_cas_app
from meterseal.trust.cas import ReleaseRequest
from meterseal.trust.measurement import Measurement
from meterseal.trust.state import MemoryCasState
from tests.billing.test_api import ADMINISTRATOR, OPERATOR
from tests.conftest import NOW
from tests.portal.conftest import Portal
from tests.portal.test_pages import csrf_of
from tests.portal.test_staff import sign_in
from tests.trust.conftest import World, make_world, platform, worker_measurement  # noqa: F401

PEM = serialization.Encoding.PEM
SECRET = b"a database password, 32 bytes!!!"
NEW_ROUTES = [
    "/portal/admin/meters/new",
    "/portal/admin/tariffs/new",
    "/portal/admin/cas",
    "/portal/admin/cas/secrets/db-password/rotate",
    "/portal/admin/cas/secrets/db-password/revoke",
    f"/portal/admin/cas/measurements/{'ab' * 32}/revoke",
    "/portal/admin/changes",
]


def csr_pem(meter_id: str, suite: CipherSuite = P256) -> str:
    """A meter's PKCS#10 request naming it (subject serialNumber), as a factory sends it."""
    key = generate_meter_key(meter_id, suite).private_key
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, meter_id)])
    algorithm = hashes.SHA256() if suite is P256 else None
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return csr.public_bytes(PEM).decode()


@dataclass
class Tooled:
    """The portal with every administrator's tool; the CAS world behind its API."""

    portal: Portal
    world: World
    maker: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
    directory: Path

    def changes(self) -> list[tuple[str, str, str, str]]:
        """(subject, action, object, outcome) of every recorded change."""
        return [
            (c.request.subject, c.request.action, c.request.object_id, c.request.outcome)
            for c in ChangeStore(self.portal.month.store).changes()
        ]


def tooled_portal(
    portal: Portal,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    tmp_path: Path,
    measurement: Measurement,
    log: ChangeStore | None = None,
) -> Iterator[Tooled]:
    """`portal` with its tools (the change log `log`, default the store's), a CAS served over
    HTTP with a secret and a rule."""
    month = portal.month
    world = make_world(platform(tmp_path / "cas"), MemoryCasState())
    world.cas.put_secret("db-password", SECRET)
    world.cas.put_secret("headend-keys", b"not a key bundle")
    world.cas.allow("anonymize-store", measurement, ["db-password"])
    maker = create_ca("ACME meters CA", now=NOW, rng=os.urandom)
    with ThreadedServer(create_cas_app(world.cas, portal.people.authenticator)) as url:
        tools = AdminTools(
            changes=log or ChangeStore(month.store),
            enrolment=Enrolment(*ca, month.store, tmp_path / "dep", manufacturers=[maker[1]]),
            tariffs=BillStore(month.store),
            cas=CasAdmin(url),
        )
        keys = PublishedKeys(month.billing_key.public_key(), month.authority_key.public_key())
        app = create_portal_app(
            portal.bills, portal.people.authenticator, portal.accounts, keys,
            fleet=FleetStore(month.store), clock=NOW.timestamp, meters=month.store, admin=tools,
        )  # fmt: skip
        yield Tooled(dataclasses.replace(portal, app=app), world, maker, tmp_path / "dep")


@pytest.fixture
def tooled(
    portal: Portal,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    tmp_path: Path,
    worker_measurement: Measurement,  # noqa: F811
) -> Iterator[Tooled]:
    """The portal with every tool."""
    yield from tooled_portal(portal, ca, tmp_path, worker_measurement)


def _post(client: TestClient, path: str, **form: str) -> httpx.Response:
    response: httpx.Response = client.post(path, data={"csrf": client.cookies[CSRF_COOKIE], **form})
    return response


def _version(world: World, name: str) -> int:
    """The latest version of the CAS's secret `name` (which must exist)."""
    secret = world.cas.state.latest_secret(name)
    assert secret is not None, name
    return secret.version


def _alert(html: str) -> str:
    found = re.search(r'role="alert"[^>]*>(.*?)</p>', html, re.S)
    assert found, html
    return found.group(1)


def test_the_session_cookie_is_the_apps() -> None:
    assert admin_tools.SESSION_COOKIE == SESSION_COOKIE


def test_an_operator_or_a_customer_reaches_no_administrator_change(tooled: Tooled) -> None:
    portal = tooled.portal
    for account in (OPERATOR, portal.customer(0)[1]):
        client, _ = sign_in(portal, account)
        for path in NEW_ROUTES:
            assert client.get(path).status_code == 403, (account, path)
            if path != "/portal/admin/changes" and path != "/portal/admin/cas":
                refused = _post(client, path, secret="db-password", toml="x", pem="x")
                assert refused.status_code == 403, (account, path)
    anonymous = TestClient(portal.app, follow_redirects=False)
    assert anonymous.post(NEW_ROUTES[0], data={"pem": "x"}).status_code == 303
    assert tooled.changes() == []
    assert _version(tooled.world, "db-password") == 1


def test_an_administrator_provisions_a_meter_from_a_csr(tooled: Tooled) -> None:
    portal = tooled.portal
    client, _ = sign_in(portal, ADMINISTRATOR)
    form = client.get("/portal/admin/meters/new")
    for label in ("PEM", "Customer id", "Region", "Cipher suite", "Meter id"):
        assert re.search(rf'<label for="\w+">{label}', form.text), label
    # Bad input: said on the form, recorded as refused, nothing registered.
    bad = _post(client, "/portal/admin/meters/new", how="csr", pem="hello", customer="C-9",
                region="R02")  # fmt: skip
    assert bad.status_code == 400
    assert "paste exactly one PEM" in _alert(bad.text)
    assert 'value="C-9"' in bad.text  # what was typed stays
    no_customer = _post(client, "/portal/admin/meters/new", how="csr", pem=csr_pem("ACME-7"),
                        customer="", region="R02")  # fmt: skip
    assert "customer id: 1 to 64" in _alert(no_customer.text)
    before = {r.meter_id for r in portal.month.store.meter_rows()}
    assert "ACME-7" not in before
    done = _post(client, "/portal/admin/meters/new", how="csr", pem=csr_pem("ACME-7"),
                 customer="C-9", region="R02", suite="")  # fmt: skip
    assert done.status_code == 200, done.text
    assert "meter ACME-7 provisioned: customer C-9, region R02, p256, from CSR" in done.text
    rows = {r.meter_id: r for r in portal.month.store.meter_rows()}
    assert (rows["ACME-7"].customer_id, rows["ACME-7"].region_id) == ("C-9", "R02")
    assert (tooled.directory / "meters" / "ACME-7.cert.pem").exists()
    registry = StoreRegistry(portal.month.store, portal.month.ca_cert)
    assert "ACME-7" in {r.meter_id for r in portal.month.store.meter_rows()}
    assert registry.rejected == {}
    # The same id again (another key, or once revoked): refused by name, nothing changes.
    again = _post(client, "/portal/admin/meters/new", how="csr", pem=csr_pem("ACME-7", ED25519),
                  customer="C-9", region="R02")  # fmt: skip
    said = "meter ACME-7 is registered already (for customer C-9)"
    assert said in _alert(again.text)
    portal.month.store.revoke_meter("ACME-7", NOW)
    revoked = _post(client, "/portal/admin/meters/new", how="csr", pem=csr_pem("ACME-7"),
                    customer="C-9", region="R02")  # fmt: skip
    assert "registered already (revoked on" in _alert(revoked.text)
    row = next(r for r in portal.month.store.meter_rows() if r.meter_id == "ACME-7")
    assert row.revoked_at == NOW  # still revoked
    assert tooled.changes() == [
        (ADMINISTRATOR, "meter.provision", "(named by its key)", tooled.changes()[0][3]),
        (ADMINISTRATOR, "meter.provision", "(named by its key)", tooled.changes()[1][3]),
        (ADMINISTRATOR, "meter.provision", "ACME-7", DONE),
        (ADMINISTRATOR, "meter.provision", "(named by its key)", tooled.changes()[3][3]),
        (ADMINISTRATOR, "meter.provision", "(named by its key)", tooled.changes()[4][3]),
    ]
    refused = [c[3].startswith("refused: ") for c in tooled.changes()]
    assert refused == [True, True, False, True, True]


def test_a_manufacturers_certificate_is_imported(tooled: Tooled) -> None:
    client, _ = sign_in(tooled.portal, ADMINISTRATOR)
    maker_key, maker_ca = tooled.maker
    meter = generate_meter_key("ACME-8", P256)
    cert = issue_meter_certificate(maker_key, maker_ca, "ACME-8", meter.public_key(), now=NOW,
                                   rng=os.urandom)  # fmt: skip
    rogue_key, rogue_ca = create_ca("ACME meters CA", now=NOW, rng=os.urandom)
    forged = issue_meter_certificate(rogue_key, rogue_ca, "ACME-8", meter.public_key(), now=NOW,
                                     rng=os.urandom)  # fmt: skip
    path = "/portal/admin/meters/new"
    refused = _post(client, path, how="manufacturer", pem=forged.public_bytes(PEM).decode(),
                    customer="C-8", region="R01")  # fmt: skip
    assert refused.status_code == 400
    done = _post(client, path, how="manufacturer", pem=cert.public_bytes(PEM).decode(),
                 customer="C-8", region="R01")  # fmt: skip
    assert "meter ACME-8 provisioned" in done.text
    assert tooled.changes()[-1] == (ADMINISTRATOR, "meter.provision", "ACME-8", DONE)


def test_an_administrator_publishes_a_tariffs_next_version(tooled: Tooled) -> None:
    portal = tooled.portal
    tariff = portal.month.tariff
    client, _ = sign_in(portal, ADMINISTRATOR)
    assert (
        f"/portal/admin/tariffs/new?from={tariff.tariff_id}"
        in client.get("/portal/admin/tariffs").text
    )
    form = client.get(f"/portal/admin/tariffs/new?from={quote(tariff.tariff_id)}")
    text = re.search(r"<textarea[^>]*>(.*?)</textarea>", form.text, re.S)
    assert text
    toml = text.group(1).replace("&#34;", '"').replace("&quot;", '"')
    assert f"version = {tariff.version + 1}" in toml
    bad = _post(
        client, "/portal/admin/tariffs/new", toml=toml.replace('currency = "', 'currency = "X')
    )
    assert bad.status_code == 400
    assert "field &#39;currency&#39;" in _alert(bad.text)
    toml = toml.replace("[rates]", 'effective_from = "2027-01-01"\n\n[rates]', 1)
    done = _post(client, "/portal/admin/tariffs/new", toml=toml)
    assert done.status_code == 200, done.text
    book = BillStore(portal.month.store).tariff_book()
    published = book.get(tariff.tariff_id, tariff.version + 1)
    assert published.rates == tariff.rates
    assert published.effective_from == dt.date(2027, 1, 1)
    assert "<dt>Effective from</dt><dd>2027-01-01</dd>" in client.get("/portal/admin/tariffs").text
    assert f"tariff {tariff.tariff_id} v{tariff.version + 1} published" in done.text
    same = _post(client, "/portal/admin/tariffs/new", toml=toml)
    assert same.status_code == 409
    changed = toml.replace('standing_charge_per_day = "', 'standing_charge_per_day = "1')
    other = _post(client, "/portal/admin/tariffs/new", toml=changed)
    assert other.status_code == 400
    assert "publish a new version" in other.text
    assert book.get(tariff.tariff_id, tariff.version + 1) == published
    outcomes = [(a, o.split(":")[0]) for _, a, _, o in tooled.changes()]
    assert outcomes == [("tariff.publish", "refused"), ("tariff.publish", DONE),
                        ("tariff.publish", "refused"), ("tariff.publish", "refused")]  # fmt: skip


def test_an_administrator_rotates_and_revokes_a_secret_and_revokes_a_measurement(
    tooled: Tooled,
    worker_measurement: Measurement,  # noqa: F811
) -> None:
    cas = tooled.world.cas
    client, _ = sign_in(tooled.portal, ADMINISTRATOR)
    listed = client.get("/portal/admin/cas")
    assert listed.status_code == 200, listed.text
    assert "db-password" in listed.text
    assert "headend-keys" in listed.text
    assert SECRET.decode() not in listed.text  # names and versions only
    rotate = "/portal/admin/cas/secrets/db-password/rotate"
    confirm = client.get(rotate)
    assert "Rotate secret db-password" in confirm.text
    assert _version(tooled.world, "db-password") == 1
    other = _post(client, rotate, secret="headend-keys")
    assert other.status_code == 400
    assert csrf_of(confirm.text) == client.cookies[CSRF_COOKIE]
    done = _post(client, rotate, secret="db-password")
    assert "secret db-password rotated to version 2" in done.text
    assert _version(tooled.world, "db-password") == 2
    fixed = _post(client, "/portal/admin/cas/secrets/headend-keys/rotate", secret="headend-keys")
    assert fixed.status_code == 409
    assert "--file" in fixed.text
    # A worker fetched the secret; revoking its measurement names what it received.
    quote_, _ = tooled.world.quote(worker_measurement)
    cas.release(ReleaseRequest("anonymize-store", quote_, ("db-password",)))
    revoke = f"/portal/admin/cas/measurements/{worker_measurement.hex}/revoke"
    assert revoke in client.get("/portal/admin/cas").text
    assert "Revoke this measurement" in client.get(revoke).text
    revoked = _post(client, revoke, measurement=worker_measurement.hex, reason="host lost")
    assert revoked.status_code == 200, revoked.text
    assert "db-password</code> v2" in revoked.text
    assert [r.reason for r in cas.state.revocations()] == ["host lost"]
    assert "nothing to do" in client.get(revoke).text
    # Revoking the secret: released to nobody until rotated again.
    withdraw = "/portal/admin/cas/secrets/db-password/revoke"
    assert withdraw in client.get("/portal/admin/cas").text
    assert "Revoke secret db-password" in client.get(withdraw).text
    assert _post(client, withdraw, secret="headend-keys").status_code == 400
    gone = _post(client, withdraw, secret="db-password", reason="pasted in a ticket")
    assert "secret db-password revoked through version 2" in gone.text
    assert cas.revoked_through("db-password") == 2
    assert "revoked through v2" in client.get("/portal/admin/cas").text
    assert "nothing to do" in client.get(withdraw).text
    assert tooled.changes() == [
        (ADMINISTRATOR, "cas.secret.rotate", "db-password", DONE),
        (ADMINISTRATOR, "cas.secret.rotate", "headend-keys", tooled.changes()[1][3]),
        (ADMINISTRATOR, "cas.measurement.revoke", worker_measurement.hex, DONE),
        (ADMINISTRATOR, "cas.secret.revoke", "db-password", DONE),
    ]
    assert "cannot take random bytes" in tooled.changes()[1][3]


def test_the_change_log_page_shows_the_chain_and_an_edit_breaks_it(tooled: Tooled) -> None:
    portal = tooled.portal
    client, _ = sign_in(portal, ADMINISTRATOR)
    meter = sorted(r.meter_id for r in portal.month.store.meter_rows())[0]
    path = f"/portal/admin/meters/{quote(meter, safe='')}/revoke"
    _post(client, path, meter=meter)
    _post(client, path, meter=meter)  # already revoked: recorded as refused
    _post(client, "/portal/admin/cas/secrets/db-password/rotate", secret="db-password")
    page = client.get("/portal/admin/changes")
    assert "The chain holds over all 3 entries" in page.text
    assert page.text.index("cas.secret.rotate") < page.text.index("meter.revoke")  # newest first
    assert "refused: already revoked" in page.text
    changes = ChangeStore(portal.month.store).changes()
    assert check_chain(changes) == []
    assert changes[-1].digest.hex() in page.text
    portal.month.execute("UPDATE admin_changes SET subject = 'someone' WHERE id = :i",
                         i=changes[0].id)  # fmt: skip
    broken = client.get("/portal/admin/changes")
    assert f"entry {changes[0].id} differs from what was recorded" in _alert(broken.text)


def test_a_portal_without_tools_says_it_cannot(portal: Portal) -> None:
    client, _ = sign_in(portal, ADMINISTRATOR)
    assert "cannot provision meters" in client.get("/portal/admin/meters/new").text
    assert "cannot publish tariffs" in client.get("/portal/admin/tariffs/new").text
    assert client.get("/portal/admin/cas").status_code == 503
    assert "keeps no change log" in client.get("/portal/admin/changes").text
    refused = _post(client, "/portal/admin/tariffs/new", toml="x")
    assert refused.status_code == 503


def test_an_administrators_bearer_token_reaches_the_cas_too(tooled: Tooled) -> None:
    portal = tooled.portal
    client = TestClient(portal.app, follow_redirects=False)
    listed = client.get("/portal/admin/cas", headers=portal.people.headers(ADMINISTRATOR))
    assert listed.status_code == 200, listed.text
    assert "db-password" in listed.text
    operator = client.get("/portal/admin/cas", headers=portal.people.headers(OPERATOR))
    assert operator.status_code == 403


def test_a_form_with_too_many_fields_is_one_clear_400(tooled: Tooled) -> None:
    client, _ = sign_in(tooled.portal, ADMINISTRATOR)
    fields = {f"extra{i}": "x" for i in range(20)}
    for path in ("/portal/admin/meters/new", "/portal/admin/tariffs/new"):
        refused = _post(client, path, **fields)
        assert refused.status_code == 400, (path, refused.text)
        assert "too many form fields (at most 16)" in refused.text
    assert tooled.changes() == []  # refused before any handler


def test_the_provisioning_form_takes_a_large_certificate_and_no_more(tooled: Tooled) -> None:
    client, _ = sign_in(tooled.portal, ADMINISTRATOR)
    path = "/portal/admin/meters/new"
    # ~10 KiB of PEM: more than the other forms take (MAX_FORM), within the page's 16 KiB.
    pem = csr_pem("ACME-9") + " " * 10_000  # a space is one byte urlencoded ("+")
    done = _post(client, path, how="csr", pem=pem, customer="C-9", region="R01")
    assert done.status_code == 200, done.text
    assert "meter ACME-9 provisioned" in done.text
    too_large = _post(client, path, how="csr", pem=pem + " " * 8_000, customer="C-9")
    assert too_large.status_code == 413
    elsewhere = _post(client, "/portal/admin/tariffs/new", toml="#" * 6_000)
    assert elsewhere.status_code == 413


class FailingLog(ChangeStore):
    """The store's change log whose every "done" entry fails once written (a full disk)."""

    def record(self, request: ChangeRequest) -> Change:
        """Write the entry, then fail for a change that took effect."""
        made = super().record(request)
        if request.outcome == DONE:
            raise StorageError("storage failed: the disk is full (simulated)")
        return made


def test_a_change_whose_entry_cannot_be_recorded_is_not_made(
    portal: Portal,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    tmp_path: Path,
    worker_measurement: Measurement,  # noqa: F811
) -> None:
    store = portal.month.store
    tooled = next(tooled_portal(portal, ca, tmp_path, worker_measurement, FailingLog(store)))
    client, _ = sign_in(tooled.portal, ADMINISTRATOR)
    provision = _post(client, "/portal/admin/meters/new", how="csr", pem=csr_pem("ACME-20"),
                      customer="C-20", region="R01")  # fmt: skip
    assert provision.status_code == 400
    assert "the disk is full" in _alert(provision.text)
    assert "ACME-20" not in {r.meter_id for r in store.meter_rows()}
    tariff = portal.month.tariff
    toml = dataclasses.replace(tariff, version=tariff.version + 1).to_toml()
    publish = _post(client, "/portal/admin/tariffs/new", toml=toml)
    assert publish.status_code == 400
    assert BillStore(store).tariff_book().latest(tariff.tariff_id).version == tariff.version
    meter = sorted(r.meter_id for r in store.meter_rows())[0]
    revoke = _post(client, f"/portal/admin/meters/{meter}/revoke", meter=meter)
    assert revoke.status_code == 503
    assert "not revoked: storage failed: the disk is full" in revoke.text
    assert next(r for r in store.meter_rows() if r.meter_id == meter).revoked_at is None
    # Only the refusals are in the log: no entry of a change that was rolled back.
    outcomes = [(a, o.split(":")[0]) for _, a, _, o in tooled.changes()]
    assert outcomes == [("meter.provision", "refused"), ("tariff.publish", "refused")]
    assert check_chain(ChangeStore(store).changes()) == []
