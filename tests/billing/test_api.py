"""The billing HTTP API on a billed, audited store: what it serves verifies, bad input is 4xx."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from meterseal.accounts.model import Role
from meterseal.billing.api import create_billing_app
from meterseal.billing.api_views import raw_media
from meterseal.billing.bill import parse_signed_bill
from meterseal.billing.billlog import BILL_LOG_HEAD, bill_leaf
from meterseal.billing.ports import BillSummary
from meterseal.billing.proofs import ReadingProof, verify_reading
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.errors import StorageError
from meterseal.runtime.auth import check_access, route_rules
from meterseal.storage import Store
from meterseal.storage.accounts import AccountStore
from meterseal.storage.bill_store import BillStore
from meterseal.transparency.merkle import verify_consistency, verify_inclusion
from tests.accounts.people import PASSWORD, People
from tests.billing.conftest import Month

CBOR = {"Accept": "application/cbor"}
AUDITOR, OPERATOR, ADMINISTRATOR = "auditor", "operator", "administrator"


@dataclass
class Api:
    """A billing API on a read-only view of `month`'s store, who was billed, who signs in."""

    month: Month
    app: FastAPI
    bills: BillStore
    billed: dict[str, str]  # customer -> bill id
    people: People
    customers: dict[str, str]  # customer id -> their account

    def get(self, path: str, who: str | None = AUDITOR, **headers: str) -> httpx.Response:
        """GET `path` in process as `who`; an exception in the app (a 500) is raised here."""

        async def get() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await client.get(path, headers=headers | self.people.headers(who))

        return asyncio.run(get())

    def json(self, path: str, who: str | None = AUDITOR) -> Any:
        """GET `path` as `who`, which must answer 200, as JSON."""
        response = self.get(path, who)
        assert response.status_code == 200, response.text
        return response.json()


def _bill(month: Month, customers: list[str] | None = None, audit: bool = True) -> dict[str, str]:
    service, auditor = month.service(), month.auditor()
    billed = {}
    for customer, meters in sorted(month.bills.customers().items()):
        if customers is None or customer in customers:
            bill = service.bill_customer(customer, meters, month.period, month.tariff).bill
            billed[customer] = bill.bill_id
            if audit:
                auditor.audit(bill.bill_id)
    return billed


def staff(people: People) -> None:
    """The auditor, an operator and an administrator."""
    people.add(AUDITOR, Role.AUDITOR)
    people.add(OPERATOR, Role.OPERATOR)
    people.add(ADMINISTRATOR, Role.ADMINISTRATOR)


def _serve(month: Month, billed: dict[str, str]) -> Iterator[Api]:
    store = Store.open_read_only(month.url)
    bills = BillStore(store)
    accounts = AccountStore(month.store)
    people = People(accounts)
    staff(people)
    customers = {
        customer: people.add(f"customer{n}", Role.CUSTOMER, customer_id=customer)
        for n, customer in enumerate(sorted(month.bills.customers()))
    }
    app = create_billing_app(bills, people.authenticator, accounts)
    try:
        yield Api(month, app, bills, billed, people, customers)
    finally:
        store.close()


@pytest.fixture
def api(month: Month) -> Iterator[Api]:
    """Both customers billed and audited clean."""
    yield from _serve(month, _bill(month))


def _path(bill_id: str) -> str:
    return f"/v1/bills/{bill_id}"


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _keys(month: Month) -> dict[str, Any]:
    authority = month.authority_key.public_key()
    return {
        "ca_certificate": month.ca_cert,
        "billing_key": month.billing_key.public_key(),
        "authority_key": authority,
        "authority_kid": kid_of(public_bytes(authority)),
    }


def test_a_customer_lists_their_audited_bills(api: Api) -> None:
    for customer, bill_id in api.billed.items():
        listed = api.json(f"/v1/customers/{customer}/bills")
        stored = api.bills.bill(bill_id)
        assert stored is not None
        assert listed["customer_id"] == customer
        (entry,) = listed["bills"]
        assert entry["bill_id"] == bill_id
        assert (entry["total"], entry["currency"]) == (stored.total, stored.currency)
        assert (entry["period_start"], entry["period_end"]) == (
            api.month.period.start,
            api.month.period.end,
        )
        assert entry["log_index"] == stored.log_index
        assert (entry["audited"], entry["clean"], entry["countersigned"]) == (True, True, True)
        assert (entry["kind"], entry["standing"]) == ("bill", "in force")
    assert {
        e["log_index"] for c in api.billed for e in api.json(f"/v1/customers/{c}/bills")["bills"]
    } == {0, 1}


def test_a_bill_comes_countersigned_as_json_and_as_cose(api: Api) -> None:
    customer = api.month.fleet[1].customer_id  # the one with two meters
    bill_id = api.billed[customer]
    stored = api.bills.bill(bill_id)
    (report,) = api.bills.reports(bill_id)
    assert stored is not None
    assert report.countersigned_bill is not None
    raw = api.get(_path(bill_id), **CBOR)
    view = api.json(_path(bill_id))
    assert view["bill_id"] == bill_id
    assert view["customer_id"] == customer
    assert view["countersigned"] is True
    assert view["latest_audit"]["id"] == report.id
    assert view["latest_audit"]["clean"] is True
    assert _b64(view["signed_bill"]) == stored.signed_bill
    assert _b64(view["countersigned_bill"]) == report.countersigned_bill
    summary = view["summary"]
    assert (summary["bill_id"], summary["charges"]["total"]) == (bill_id, stored.total)
    assert summary["packets"] == 192
    assert len(summary["meters"]) == 2
    assert summary["period"]["start"] == api.month.period.start
    assert summary["merkle_root"] == parse_signed_bill(raw.content)[0].merkle_root.hex()
    assert raw.headers["content-type"] == "application/cbor"
    assert raw.content == report.countersigned_bill
    assert api.get(_path(bill_id), Accept="application/cose").content == raw.content
    # '/' percent-encoded names the same bill; JSON wins ties and unknown types.
    assert api.get(f"/v1/bills/{quote(bill_id, safe='')}", **CBOR).content == raw.content
    for accept in ("application/json, application/cbor;q=0.5", "text/html", "*/*"):
        assert api.get(_path(bill_id), Accept=accept).json()["bill_id"] == bill_id


def test_a_fetched_bill_and_fetched_proof_verify_with_public_material(api: Api) -> None:
    meter = api.month.fleet[0]
    bill_id = api.billed[meter.customer_id]
    signed = api.get(_path(bill_id), **CBOR).content
    (packet,) = api.month.bills.packets(
        [meter.key.meter_id], api.month.period.start + 5 * 900, api.month.period.start + 6 * 900
    )
    proof_path = f"{_path(bill_id)}/readings/{meter.key.meter_id}/{packet.counter}/proof"
    raw = api.get(proof_path, **CBOR)
    assert raw.headers["content-type"] == "application/cbor"
    proof = ReadingProof.from_cbor(raw.content)
    checked = verify_reading(signed, proof, **_keys(api.month))
    assert (checked.reading.counter, checked.index) == (packet.counter, 5)
    view = api.json(proof_path)
    assert _b64(view["proof"]) == raw.content
    assert (view["index"], view["tree_size"], view["suite"]) == (5, 96, meter.key.suite.name)
    assert [bytes.fromhex(h) for h in view["path"]] == list(proof.path)


def test_the_bill_log_head_verifies_and_grows_consistently(api: Api) -> None:
    public = api.month.billing_key.public_key()
    head = api.json("/v1/bill-log/head")
    latest = BILL_LOG_HEAD.verified(_b64(head["signed_head"]), public)
    assert (latest.size, latest.root.hex()) == (2, head["root"])
    assert api.get("/v1/bill-log/head", **CBOR).content == _b64(head["signed_head"])
    first = BILL_LOG_HEAD.verified(api.get("/v1/bill-log/heads/1", **CBOR).content, public)
    assert first.size == 1
    consistency = api.json("/v1/bill-log/consistency?first=1&second=2")
    proof = [bytes.fromhex(h) for h in consistency["proof"]]
    verify_consistency(1, 2, first.root, latest.root, proof)
    assert api.json("/v1/bill-log/consistency?first=2&second=2")["proof"] == []
    for bill_id in api.billed.values():
        inclusion = api.json(f"/v1/bill-log/inclusion/{bill_id}")
        head_there = BILL_LOG_HEAD.verified(_b64(inclusion["signed_head"]), public)
        stored = api.bills.bill(bill_id)
        assert stored is not None
        assert inclusion["log_index"] == stored.log_index
        verify_inclusion(
            bill_leaf(_b64(api.json(_path(bill_id))["signed_bill"])),
            inclusion["log_index"],
            head_there.size,
            [bytes.fromhex(h) for h in inclusion["proof"]],
            head_there.root,
        )
    oldest = next(b for b in api.billed.values() if api.bills.bill(b).log_index == 0)  # type: ignore[union-attr]
    assert api.json(f"/v1/bill-log/inclusion/{oldest}?tree_size=1")["tree_size"] == 1


def test_the_auditors_reports_are_listed_and_fetched(api: Api) -> None:
    listed = api.json("/v1/audit/reports")["reports"]
    assert len(listed) == 2
    assert all(r["clean"] for r in listed)
    assert listed[0]["id"] > listed[1]["id"]  # newest first
    bill_id = next(iter(api.billed.values()))
    (one,) = api.json(f"/v1/audit/reports?bill={quote(bill_id, safe='')}")["reports"]
    assert one["bill_id"] == bill_id
    assert one["report"]["verdict"] == "countersigned"
    assert api.json(f"/v1/audit/reports/{one['id']}") == one
    assert len(api.json("/v1/audit/reports?limit=1")["reports"]) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/NOBODY/bills",
        "/v1/bills/NOBODY/0-86400",
        "/v1/bills/NOBODY/0-86400/readings/M/1/proof",
        "/v1/bill-log/heads/3",
        "/v1/bill-log/consistency?first=1&second=3",
        "/v1/bill-log/inclusion/NOBODY/0-86400",
        "/v1/audit/reports/999",
    ],
)
def test_unknown_ids_are_404_with_a_detail(api: Api, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404, response.text
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/bill-log/consistency?first=2&second=1",
        "/v1/bill-log/consistency?first=0&second=1",
        "/v1/bill-log/consistency?first=1",
        "/v1/bill-log/consistency?first=x&second=2",
        f"/v1/bill-log/consistency?first=1&second={2**70}",
        "/v1/bill-log/heads/0",
        f"/v1/bill-log/heads/{2**64}",
        "/v1/bill-log/heads/-1",
        "/v1/bills/A/1-2/readings/M/x/proof",
        "/v1/bills/A/1-2/readings/M/-1/proof",
        f"/v1/bills/A/1-2/readings/M/{2**63}/proof",
        "/v1/bills/A%00/1-2",
        "/v1/bills/" + "A" * 129,
        "/v1/customers/A%01B/bills",
        "/v1/audit/reports/abc",
        f"/v1/audit/reports/{2**63}",
        "/v1/audit/reports?limit=0",
        "/v1/audit/reports?bill=%00",
    ],
)
def test_bad_parameters_are_422_never_500(api: Api, path: str) -> None:
    response = api.get(path)  # an exception in the app, which would be a 500, fails here
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_readings_off_the_bill_and_sizes_before_it_are_refused(api: Api) -> None:
    meter = api.month.fleet[0]
    mine, other = api.billed[meter.customer_id], api.billed[api.month.fleet[1].customer_id]
    proofs = f"{_path(mine)}/readings"
    assert api.get(f"{proofs}/{meter.key.meter_id}/1/proof").status_code == 404
    assert api.get(f"{proofs}/{api.month.fleet[2].key.meter_id}/1/proof").status_code == 404
    later = max((mine, other), key=lambda b: api.bills.bill(b).log_index)  # type: ignore[union-attr]
    assert api.get(f"/v1/bill-log/inclusion/{later}?tree_size=1").status_code == 422
    assert api.get(f"/v1/bill-log/inclusion/{later}?tree_size=3").status_code == 404


def test_a_reading_changed_after_billing_gets_409_not_a_proof(api: Api) -> None:
    meter = api.month.fleet[0]
    counter = (api.month.period.start + 10 * 900) // 900
    api.month.execute(
        "UPDATE signed_originals SET signed_original = :s WHERE meter_id = :m AND counter = :c",
        s=b"\xd2tampered",
        m=meter.key.meter_id,
        c=counter,
    )
    path = f"{_path(api.billed[meter.customer_id])}/readings/{meter.key.meter_id}/{counter}/proof"
    response = api.get(path)
    assert response.status_code == 409
    assert "not the billed" in response.json()["detail"]


def test_unaudited_and_unclean_bills_come_billing_signed(month: Month) -> None:
    first, second = sorted(month.bills.customers())
    billed = _bill(month, [first], audit=False)
    month.execute(
        "UPDATE signed_originals SET energy_wh = energy_wh + 1 WHERE meter_id = :m",
        m=month.customer(first)[0],
    )
    month.auditor().audit(billed[first])  # finds the change: no countersignature
    for api in _serve(month, billed):
        stored = api.bills.bill(billed[first])
        assert stored is not None
        view = api.json(_path(billed[first]))
        assert (view["countersigned"], view["countersigned_bill"]) == (False, None)
        assert view["latest_audit"]["clean"] is False
        assert api.get(_path(billed[first]), **CBOR).content == stored.signed_bill
        (entry,) = api.json(f"/v1/customers/{first}/bills")["bills"]
        assert (entry["audited"], entry["clean"], entry["countersigned"]) == (True, False, False)
        assert api.json(f"/v1/customers/{second}/bills")["bills"] == []  # known, not billed


def test_an_unreachable_store_is_503_and_counted(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_args: object) -> None:
        raise StorageError("storage failed: connection refused")

    monkeypatch.setattr(api.bills, "bill", down)
    response = api.get(_path(next(iter(api.billed.values()))))
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert "connection refused" not in response.text
    assert api.json("/v1/counters")["api"]["store_unavailable"] == 1


def test_every_route_declares_its_access_and_customers_data_needs_a_role(api: Api) -> None:
    check_access(api.app)
    rules = route_rules(api.app)
    public = {"/healthz", "/v1/counters", "/v1/bill-log/head", "/v1/bill-log/heads/{size}"}
    public |= {"/v1/bill-log/consistency", "/openapi.json", "/docs", "/redoc"}
    public |= {"/docs/oauth2-redirect", "/v1/auth/token"}
    for route, names in rules.items():
        path = route.partition(" ")[2]
        assert (names == ["public"]) == (path in public), route


def test_openapi_lists_the_routes_and_the_cbor_alternatives(api: Api) -> None:
    schema = api.json("/openapi.json")
    bill, proof = "/v1/bills/{bill_id}", "/v1/bills/{bill_id}/readings/{meter_id}/{counter}/proof"
    assert {
        "/healthz",
        "/v1/counters",
        "/v1/customers/{customer_id}/bills",
        bill,
        proof,
        "/v1/bill-log/head",
        "/v1/bill-log/heads/{size}",
        "/v1/bill-log/consistency",
        "/v1/bill-log/inclusion/{bill_id}",
        "/v1/audit/reports",
        "/v1/audit/reports/{report_id}",
    } <= set(schema["paths"])
    content = schema["paths"][bill]["get"]["responses"]["200"]["content"]
    assert {"application/json", "application/cbor", "application/cose"} <= set(content)
    assert "409" in schema["paths"][proof]["get"]["responses"]
    assert api.json("/healthz") == {"status": "ok"}
    # A customer's bill list answers every field of the port's BillSummary, each required
    # (BillEntry is made from it, not written out again: a field added there shows here).
    entry = schema["components"]["schemas"]["BillEntry"]
    assert list(entry["properties"]) == entry["required"] == list(BillSummary._fields)
    assert entry["properties"]["clean"]["anyOf"] == [{"type": "boolean"}, {"type": "null"}]
    assert entry["properties"]["kind"] == {"title": "Kind", "type": "string"}  # no default


@pytest.mark.parametrize(
    ("accept", "raw"),
    [
        ("", None),
        ("application/cbor", "application/cbor"),
        ("application/json;q=0.9, application/cbor", "application/cbor"),
        ("application/cbor;q=0.5, application/json", None),
        ("application/cbor, application/json", None),  # a tie: JSON
        ("application/cbor;q=2", None),  # malformed q-value: q=0
        ("application/*, application/cose", None),
        ("text/html, application/cose;q=0.1", "application/cose"),
    ],
)
def test_content_negotiation(accept: str, raw: str | None) -> None:
    assert raw_media(accept, ("application/cbor", "application/cose")) == raw


def test_bills_serve_runs_the_api_until_sigterm_and_callers_sign_in(
    api: Api, tmp_path: Path
) -> None:
    script = (
        "import typer; from meterseal.cli_bills import bills_app; "
        "app = typer.Typer(); app.add_typer(bills_app, name='bills'); app()"
    )
    command = [sys.executable, "-c", script, "bills", "serve", "--store", api.month.url]
    from meterseal.accounts.token_key import ensure_token_key

    (tmp_path / "deployment").mkdir()
    ensure_token_key(tmp_path / "deployment", None)  # what `keys init` makes
    command += ["--deployment", str(tmp_path / "deployment")]
    with subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    ) as process:
        try:
            assert process.stdout is not None
            # The skeleton announces its admin endpoint first, then the API's.
            lines = [process.stdout.readline() for _ in range(2)]
            line = next((x for x in lines if x.startswith("listening bills ")), "")
            assert line.startswith("listening bills http://127.0.0.1:"), lines
            url = line.split()[-1]
            bill_id = next(iter(api.billed.values()))
            assert httpx.get(f"{url}/v1/bills/{bill_id}", timeout=10).status_code == 401
            login = {"username": AUDITOR, "password": PASSWORD}
            signed_in = httpx.post(f"{url}/v1/auth/token", json=login, timeout=10)
            assert signed_in.status_code == 200, signed_in.text
            token = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
            found = httpx.get(f"{url}/v1/bills/{bill_id}", headers=token, timeout=10)
            assert found.json()["bill_id"] == bill_id
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    # The read is in the access log, under the auditor's name.
    (entry,) = AccountStore(api.month.store).entries()
    assert (entry.subject, entry.customer_id, entry.object_id) == (
        AUDITOR,
        api.bills.bill(bill_id).customer_id,  # type: ignore[union-attr]
        bill_id,
    )
