"""Who reads what through the billing API: every route x role, customers kept apart, sign-in.

The attacks of issue 18 are regressions here: an anonymous `GET /v1/audit/reports?limit=1000`,
walking another customer's counters through `/proof`, telling customer ids that exist from
those that do not by 200/404.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest

from meterseal.accounts.authn import TOO_MANY
from meterseal.accounts.model import Role
from meterseal.accounts.throttle import ThrottleLimits
from meterseal.billing.api import create_billing_app
from meterseal.runtime.auth import UNAUTHENTICATED, route_rules
from meterseal.storage import Store
from meterseal.storage.accounts import AccountStore
from meterseal.storage.bill_store import BillStore
from tests.accounts.people import PASSWORD, People
from tests.billing.conftest import Month
from tests.billing.test_api import ADMINISTRATOR, AUDITOR, OPERATOR, Api, _bill, _serve, staff


@pytest.fixture
def api(month: Month) -> Iterator[Api]:
    """Both customers billed and audited clean; an account per customer and per staff role."""
    yield from _serve(month, _bill(month))


@dataclass
class Objects:
    """A customer's objects: their id, bill, a proof path per reading on it, inclusion."""

    customer: str
    bill_id: str
    proofs: list[str]
    span: str  # ?start=&end= of the billed period

    @property
    def listing(self) -> str:
        return f"/v1/customers/{self.customer}/bills"

    @property
    def readings(self) -> str:
        return f"/v1/customers/{self.customer}/readings{self.span}"

    @property
    def bill(self) -> str:
        return f"/v1/bills/{self.bill_id}"

    @property
    def inclusion(self) -> str:
        return f"/v1/bill-log/inclusion/{self.bill_id}"


def objects_of(api: Api, customer: str) -> Objects:
    """Every object of `customer` the API serves."""
    bill_id = api.billed[customer]
    proofs = []
    for meter in api.month.customer(customer):
        period = api.month.period
        for packet in api.month.bills.packets([meter], period.start, period.end):
            proofs.append(f"/v1/bills/{bill_id}/readings/{meter}/{packet.counter}/proof")
    span = f"?start={api.month.period.start}&end={api.month.period.end}"
    return Objects(customer, bill_id, proofs, span)


def _customers(api: Api) -> tuple[str, str]:
    fleet = api.month.fleet
    return fleet[0].customer_id, fleet[1].customer_id  # B has two meters


def _post(
    api: Api, path: str, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post(path, json=body, headers=headers or {})

    return asyncio.run(post())


# Who asks: anonymous, customer A (about A's objects), and each staff role.
CALLERS = ("anonymous", "customer", AUDITOR, OPERATOR, ADMINISTRATOR)
EVERYONE = dict.fromkeys(CALLERS, 200)
CUSTOMER_DATA = {"anonymous": 401, "customer": 200, AUDITOR: 200, OPERATOR: 403}
CUSTOMER_DATA |= {ADMINISTRATOR: 403}
AUDIT_DATA = {"anonymous": 401, "customer": 403, AUDITOR: 200, OPERATOR: 403, ADMINISTRATOR: 403}
SIGNED_IN = {"anonymous": 401} | dict.fromkeys(CALLERS[1:], 200)
ACCESS_LOG = {"anonymous": 401, "customer": 200, AUDITOR: 200, OPERATOR: 403}
ACCESS_LOG |= {ADMINISTRATOR: 403}

Path = Callable[[Api, Objects], str]
# Every route of the billing app: a concrete request and the status each caller gets.
# A route missing here fails `test_every_route_is_in_the_matrix`.
MATRIX: dict[str, tuple[Path, dict[str, int]]] = {
    "GET /healthz": (lambda a, o: "/healthz", EVERYONE),
    "GET /v1/counters": (lambda a, o: "/v1/counters", EVERYONE),
    "GET,HEAD /openapi.json": (lambda a, o: "/openapi.json", EVERYONE),
    "GET,HEAD /docs": (lambda a, o: "/docs", EVERYONE),
    "GET,HEAD /docs/oauth2-redirect": (lambda a, o: "/docs/oauth2-redirect", EVERYONE),
    "GET,HEAD /redoc": (lambda a, o: "/redoc", EVERYONE),
    "POST /v1/auth/token": (lambda a, o: "POST /v1/auth/token", EVERYONE),
    "GET /v1/auth/whoami": (lambda a, o: "/v1/auth/whoami", SIGNED_IN),
    "GET /v1/access-log": (lambda a, o: "/v1/access-log", ACCESS_LOG),
    "GET /v1/customers/{customer_id}/bills": (lambda a, o: o.listing, CUSTOMER_DATA),
    "GET /v1/customers/{customer_id}/readings": (lambda a, o: o.readings, CUSTOMER_DATA),
    "GET /v1/bills/{bill_id:path}/readings/{meter_id}/{counter}/proof": (
        lambda a, o: o.proofs[0],
        CUSTOMER_DATA,
    ),
    "GET /v1/bills/{bill_id:path}": (lambda a, o: o.bill, CUSTOMER_DATA),
    "GET /v1/bill-log/head": (lambda a, o: "/v1/bill-log/head", EVERYONE),
    "GET /v1/bill-log/heads/{size}": (lambda a, o: "/v1/bill-log/heads/1", EVERYONE),
    "GET /v1/bill-log/consistency": (
        lambda a, o: "/v1/bill-log/consistency?first=1&second=2",
        EVERYONE,
    ),
    "GET /v1/bill-log/inclusion/{bill_id:path}": (lambda a, o: o.inclusion, CUSTOMER_DATA),
    "GET /v1/audit/reports": (lambda a, o: "/v1/audit/reports?limit=1000", AUDIT_DATA),
    "GET /v1/audit/reports/{report_id}": (
        lambda a, o: f"/v1/audit/reports/{a.bills.reports(o.bill_id)[0].id}",
        AUDIT_DATA,
    ),
}


def test_every_route_is_in_the_matrix(api: Api) -> None:
    assert set(route_rules(api.app)) == set(MATRIX)


def test_each_role_gets_what_the_matrix_says_on_every_route(api: Api) -> None:
    a = _customers(api)[0]
    mine = objects_of(api, a)
    for route, (path_of, expected) in MATRIX.items():
        path = path_of(api, mine)
        for caller, status in expected.items():
            who = {"anonymous": None, "customer": api.customers[a]}.get(caller, caller)
            if path.startswith("POST "):
                login = {"username": api.customers[a], "password": PASSWORD}
                response = _post(api, path[5:], login, api.people.headers(who))
            else:
                response = api.get(path, who)
            assert response.status_code == status, (route, caller, response.text)


def _same_as_unknown(api: Api, who: str, path: str, real: str, unknown: str) -> None:
    """`path` answers `who` exactly as the path with an unknown id (of equal length) does."""
    assert len(real) == len(unknown)
    theirs = api.get(path, who)
    nothing = api.get(path.replace(real, unknown), who)
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.content == nothing.content.replace(unknown.encode(), real.encode())
    headers = dict(theirs.headers)
    assert headers == dict(nothing.headers)


def _unknown(value: str) -> str:
    return value[:-1] + ("Y" if value[-1] == "Z" else "Z")


def test_customer_a_never_reads_b_by_any_id_proof_or_listing(api: Api) -> None:
    a, b = _customers(api)
    reader, theirs = api.customers[a], objects_of(api, b)
    assert len(theirs.proofs) > 100  # every reading of B's two meters, walked by counter
    _same_as_unknown(api, reader, theirs.listing, b, _unknown(b))
    _same_as_unknown(api, reader, theirs.readings, b, _unknown(b))
    for path in (theirs.bill, theirs.inclusion, *theirs.proofs):
        _same_as_unknown(api, reader, path, theirs.bill_id, _unknown(theirs.bill_id))
    # Percent-encoded ids are the same ids.
    encoded = f"/v1/bills/{quote(theirs.bill_id, safe='')}"
    assert api.get(encoded, reader).content == api.get(theirs.bill, reader).content
    # Nothing of B was read, so nothing of B is in the access log.
    assert AccountStore(api.month.store).entries(customer_id=b) == []
    # A's own: proofs, and every reading of the period, each with its signed original.
    mine = objects_of(api, a)
    assert all(api.get(p, reader).status_code == 200 for p in mine.proofs[:5])
    readings = api.json(mine.readings, reader)["readings"]
    assert len(readings) == len(mine.proofs)
    (meter,) = api.month.customer(a)
    assert {r["meter_id"] for r in readings} == {meter}
    assert all(base64.b64decode(r["signed_original"]) for r in readings)


def test_the_issue_s_attacks_are_refused(api: Api) -> None:
    a, b = _customers(api)
    unauthenticated = {"detail": UNAUTHENTICATED}
    # Listing every bill: anonymous 401, a customer 403.
    listing = api.get("/v1/audit/reports?limit=1000", None)
    assert (listing.status_code, listing.json()) == (401, unauthenticated)
    assert listing.headers["www-authenticate"] == "Bearer"
    assert api.get("/v1/audit/reports?limit=1000", api.customers[a]).status_code == 403
    # Walking B's counters through /proof, or B's readings, anonymously.
    theirs = objects_of(api, b)
    for path in [*theirs.proofs, theirs.readings]:
        refused = api.get(path, None)
        assert (refused.status_code, refused.json()) == (401, unauthenticated)
    # Which customer ids exist: the same 401 for a real id and an unknown one.
    real = api.get(f"/v1/customers/{b}/bills", None)
    unknown = api.get(f"/v1/customers/{_unknown(b)}/bills", None)
    assert (real.status_code, real.content) == (unknown.status_code, unknown.content)
    assert dict(real.headers) == dict(unknown.headers)


def test_expired_tampered_and_disabled_credentials_get_one_401(api: Api) -> None:
    token = api.people.token(AUDITOR)
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/v1/audit/reports", None, **bearer).status_code == 200
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    answers = [api.get("/v1/audit/reports", None, Authorization=f"Bearer {tampered}")]
    answers.append(api.get("/v1/audit/reports", None, Authorization="Basic YTpi"))
    api.people.clock.now += api.people.signer.ttl
    answers.append(api.get("/v1/audit/reports", None, **bearer))  # expired
    api.people.clock.now -= api.people.signer.ttl
    api.people.repository.disable(AUDITOR, api.people.clock())
    answers.append(api.get("/v1/audit/reports", None, **bearer))  # disabled
    for answer in answers:
        assert (answer.status_code, answer.json()) == (401, {"detail": UNAUTHENTICATED})
    login = _post(api, "/v1/auth/token", {"username": AUDITOR, "password": PASSWORD})
    assert login.status_code == 401  # a disabled account cannot sign in either


def test_sign_in_issues_a_token_for_the_right_password_only(api: Api) -> None:
    a = _customers(api)[0]
    account = api.customers[a]
    wrong = _post(api, "/v1/auth/token", {"username": account, "password": "nope-nope"})
    nobody = _post(api, "/v1/auth/token", {"username": "nobody", "password": "nope-nope"})
    assert (wrong.status_code, wrong.content) == (nobody.status_code, nobody.content)
    assert wrong.status_code == 401
    signed_in = _post(api, "/v1/auth/token", {"username": account, "password": PASSWORD})
    assert signed_in.status_code == 200
    body = signed_in.json()
    assert body["token_type"] == "bearer"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    me = api.get("/v1/auth/whoami", None, **bearer).json()
    assert me == {"username": account, "roles": ["customer"], "customer_id": a}


def test_an_api_key_acts_within_its_scope_until_revoked(api: Api) -> None:
    people = api.people
    people.add("robot", Role.AUDITOR, Role.ADMINISTRATOR)
    auditing, administering = (
        people.api_key("robot", Role.AUDITOR),
        people.api_key("robot", Role.ADMINISTRATOR),
    )
    reports = "/v1/audit/reports"
    assert api.get(reports, None, Authorization=f"Bearer {auditing}").status_code == 200
    assert api.get(reports, None, Authorization=f"Bearer {administering}").status_code == 403
    me = api.get("/v1/auth/whoami", None, Authorization=f"Bearer {auditing}").json()
    assert me["roles"] == ["auditor"]
    people.repository.revoke_api_key(auditing.split("_")[1], people.clock())
    assert api.get(reports, None, Authorization=f"Bearer {auditing}").status_code == 401
    forged = auditing[:-4] + "abcd"
    assert api.get(reports, None, Authorization=f"Bearer {forged}").status_code == 401


def test_failed_sign_ins_back_off_even_for_the_right_password(month: Month) -> None:
    billed = _bill(month)
    store = Store.open_read_only(month.url)
    try:
        accounts = AccountStore(month.store)
        people = People(accounts, limits=ThrottleLimits(free_failures=3, base_delay=30.0))
        staff(people)
        app = create_billing_app(BillStore(store), people.authenticator, accounts)
        api = Api(month, app, BillStore(store), billed, people, {})
        for _ in range(3):
            wrong = _post(api, "/v1/auth/token", {"username": AUDITOR, "password": "wrong-one"})
            assert wrong.status_code == 401
        right = _post(api, "/v1/auth/token", {"username": AUDITOR, "password": PASSWORD})
        assert (right.status_code, right.json()) == (429, {"detail": TOO_MANY})
        assert right.headers["retry-after"] == "30"
        people.clock.now += 30
        assert _post(api, "/v1/auth/token", {"username": AUDITOR, "password": PASSWORD}).is_success
        # A source's failed sign-ins and bad tokens count together: one more bad token is
        # refused, and then even a good token from that source waits.
        assert api.get("/v1/audit/reports", None, Authorization="Bearer x").status_code == 401
        assert api.get("/v1/audit/reports").status_code == 429
        people.clock.now += 60
        assert api.get("/v1/audit/reports").status_code == 200
    finally:
        store.close()


def test_the_access_log_records_reads_and_shows_customers_their_own(api: Api) -> None:
    a, b = _customers(api)
    mine, theirs = objects_of(api, a), objects_of(api, b)
    assert api.get(mine.bill, api.customers[a]).status_code == 200
    assert api.get(theirs.bill, AUDITOR).status_code == 200
    assert api.get(theirs.proofs[0], AUDITOR).status_code == 200
    assert api.get("/v1/audit/reports", OPERATOR).status_code == 403  # refused: not a read
    entries = api.json("/v1/access-log", AUDITOR)["entries"]
    seen = [(e["subject"], e["customer_id"], e["route"], e["object_id"]) for e in entries]
    assert seen == [
        (api.customers[a], a, "/v1/bills/{bill_id:path}", mine.bill_id),
        (AUDITOR, b, "/v1/bills/{bill_id:path}", theirs.bill_id),
        (
            AUDITOR,
            b,
            "/v1/bills/{bill_id:path}/readings/{meter_id}/{counter}/proof",
            theirs.bill_id,
        ),
    ]
    assert [e["roles"] for e in entries] == ["customer", "auditor", "auditor"]
    # A customer sees only reads of their own data, whatever they ask for.
    for path in ("/v1/access-log", f"/v1/access-log?customer={b}"):
        own = api.json(path, api.customers[b])["entries"]
        assert [e["customer_id"] for e in own] == [b, b]
    assert [e["customer_id"] for e in api.json(f"/v1/access-log?customer={a}")["entries"]] == [a]
    after = entries[1]["id"]
    assert len(api.json(f"/v1/access-log?after={after}")["entries"]) == 1
    # An auditor's report listing names each customer whose report was read.
    api.get("/v1/audit/reports", AUDITOR)
    latest = api.json(f"/v1/access-log?after={entries[-1]['id']}")["entries"]
    assert sorted(e["customer_id"] for e in latest[:2]) == sorted([a, b])


def test_a_readings_span_is_bounded(api: Api) -> None:
    a = _customers(api)[0]
    path = f"/v1/customers/{a}/readings"
    for span in ("?start=10&end=10", "?start=10&end=5", f"?start=0&end={31 * 86_400 + 1}"):
        assert api.get(path + span, api.customers[a]).status_code == 422
    assert api.get(f"{path}?start=0&end={31 * 86_400}", api.customers[a]).status_code == 200
