"""Every route of every HTTP app has the rule this table gives it (a new route must be added).

The table is the access policy in one place: public by design, proven by its body, or the
roles that may call it. The behaviour behind the role rules is tested per app
(tests/billing/test_api_access.py, tests/trust/test_api.py); this test makes sure no route
of any app escapes the table.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

import meterseal
from meterseal.acquisition.http import create_app
from meterseal.billing.api import create_billing_app
from meterseal.cascadb.http_api import create_app as create_cascadb_app
from meterseal.jobs.http_api import create_jobs_app
from meterseal.kvs.gateway import create_gateway_app
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.portal.app import PublishedKeys, create_portal_app
from meterseal.runtime.auth import check_access, route_rules
from meterseal.runtime.lifecycle import Lifecycle, admin_app
from meterseal.trust.api import create_cas_app
from tests.accounts.people import MemoryAccounts, People
from tests.runtime.test_auth import Idle

PUBLIC, BODY = ["public"], ["proven-by-body"]
FRAMEWORK = {
    "GET,HEAD /openapi.json": PUBLIC,
    "GET,HEAD /docs": PUBLIC,
    "GET,HEAD /docs/oauth2-redirect": PUBLIC,
    "GET,HEAD /redoc": PUBLIC,
    "GET /healthz": PUBLIC,
    "GET /v1/counters": PUBLIC,
}
SIGN_IN = {
    "POST /v1/auth/token": PUBLIC,
    "GET /v1/auth/whoami": ["roles:customer|auditor|operator|administrator"],
}
CUSTOMER_DATA = ["roles:customer|auditor"]
BILLS: dict[str, list[str]] = (
    FRAMEWORK
    | SIGN_IN
    | {
        "GET /v1/access-log": CUSTOMER_DATA,
        "GET /v1/customers/{customer_id}/bills": CUSTOMER_DATA,
        "GET /v1/customers/{customer_id}/readings": CUSTOMER_DATA,
        "GET /v1/bills/{bill_id:path}/readings/{meter_id}/{counter}/proof": CUSTOMER_DATA,
        "GET /v1/bills/{bill_id:path}": CUSTOMER_DATA,
        "GET /v1/bill-log/inclusion/{bill_id:path}": CUSTOMER_DATA,
        "GET /v1/bill-log/head": PUBLIC,
        "GET /v1/bill-log/heads/{size}": PUBLIC,
        "GET /v1/bill-log/consistency": PUBLIC,
        "GET /v1/audit/reports": ["role:auditor"],
        "GET /v1/audit/reports/{report_id}": ["role:auditor"],
    }
)
PORTAL = {
    "GET /v1/keys": PUBLIC,
    "GET /portal/static/{name:path}": PUBLIC,
    "GET /portal/": PUBLIC,
    "GET /portal/login": PUBLIC,
    "POST /portal/login": PUBLIC,  # checks the form's CSRF token, then the password
    "POST /portal/logout": PUBLIC,  # checks the form's CSRF token
    "GET /portal/bills": ["role:customer"],
    "GET /portal/bills/{bill_id:path}": ["role:customer"],
    "GET /portal/access": ["role:customer"],
    "GET /portal/apps": ["role:customer"],
    # A form's POST: the session counts only with the form's matching CSRF token.
    "POST /portal/apps": ["role:customer"],
    "GET /portal/audit": ["role:auditor"],
    "GET /portal/audit/reports/{report_id}": ["role:auditor"],
    "GET /portal/audit/bills": ["role:auditor"],
    "GET /portal/audit/log": ["role:auditor"],
    "GET /portal/fleet": ["role:operator"],
    "GET /portal/fleet/load": ["role:operator"],
    "GET /portal/fleet/services": ["role:operator"],
    "GET /portal/admin/meters": ["role:administrator"],
    "GET /portal/admin/tariffs": ["role:administrator"],
    "GET /portal/admin/meters/{meter_id}/revoke": ["role:administrator"],
    "POST /portal/admin/meters/{meter_id}/revoke": ["role:administrator"],
    "GET /portal/admin/meters/new": ["role:administrator"],
    "POST /portal/admin/meters/new": ["role:administrator"],
    "GET /portal/admin/tariffs/new": ["role:administrator"],
    "POST /portal/admin/tariffs/new": ["role:administrator"],
    "GET /portal/admin/cas": ["role:administrator"],
    "GET /portal/admin/cas/secrets/{name}/rotate": ["role:administrator"],
    "POST /portal/admin/cas/secrets/{name}/rotate": ["role:administrator"],
    "GET /portal/admin/cas/secrets/{name}/revoke": ["role:administrator"],
    "POST /portal/admin/cas/secrets/{name}/revoke": ["role:administrator"],
    "GET /portal/admin/cas/measurements/{measurement}/revoke": ["role:administrator"],
    "POST /portal/admin/cas/measurements/{measurement}/revoke": ["role:administrator"],
    "GET /portal/admin/changes": ["role:administrator"],
    # Meter commands (portal.supply): the load's supply is the operator's or administrator's.
    "GET /portal/meters/{meter_id}/supply": ["roles:operator|administrator"],
    "POST /portal/meters/{meter_id}/supply": ["roles:operator|administrator"],
    "GET /portal/commands": ["roles:operator|administrator"],
    "POST /v1/meters/{meter_id}/commands": ["roles:operator|administrator"],
    "GET /v1/commands": ["roles:operator|administrator"],
}
EXPECTED: dict[str, dict[str, list[str]]] = {
    "meterseal bills": BILLS,
    "meterseal bills and portal": BILLS | PORTAL,
    "meterseal CAS": FRAMEWORK
    | SIGN_IN
    | {
        "POST /v1/nonce": PUBLIC,
        "POST /v1/release": BODY,
        "GET /v1/policies": ["role:administrator"],
        "GET /v1/secrets": ["role:administrator"],
        "POST /v1/secrets/{name}/rotate": ["role:administrator"],
        "POST /v1/secrets/{name}/revoke": ["role:administrator"],
        "POST /v1/measurements/{measurement}/revoke": ["role:administrator"],
        "GET /v1/log": ["roles:administrator|auditor"],
        "GET /v1/attestation": PUBLIC,
    },
    "meterseal head-end": FRAMEWORK | {"POST /v1/readings": BODY, "POST /v1/readings/batch": BODY},
    "meterseal idle": FRAMEWORK | {"GET /readyz": PUBLIC, "GET /metrics": PUBLIC},
    # The KVS gateway: API keys scoped to a bucket, key prefix and rights (kvs.gateway_auth).
    "meterseal KVS gateway": FRAMEWORK
    | {
        "PUT /v1/kvs/{bucket}/{key:path}": ["kvs:write"],
        "GET /v1/kvs/{bucket}/{key:path}": ["kvs:read"],
        "HEAD /v1/kvs/{bucket}/{key:path}": ["kvs:read"],
        "DELETE /v1/kvs/{bucket}/{key:path}": ["kvs:write"],
        "GET /v1/kvs/{bucket}": ["kvs:read"],
        "PUT /v1/policy/{bucket}/{key:path}": ["kvs:write"],
        "GET /v1/policy/{bucket}": ["kvs:read|admin"],
        "PUT /v1/policy/{bucket}": ["kvs:admin"],
        "POST /v1/scrub": ["kvs:admin:*"],
    },
    # CascaDB's JSON API: the utility's staff run SQL; customers reach data through bills.
    "meterseal CascaDB": FRAMEWORK | {"POST /v1/sql": ["roles:operator|administrator"]},
    # The jobs' Manager: the utility's staff run jobs; auditors follow them.
    "meterseal jobs": FRAMEWORK
    | SIGN_IN
    | {
        "POST /v1/jobs": ["roles:operator|administrator"],
        "GET /v1/jobs": ["roles:operator|administrator|auditor"],
        "GET /v1/jobs/{job_id}": ["roles:operator|administrator|auditor"],
        "POST /v1/jobs/{job_id}/cancel": ["roles:operator|administrator"],
    },
}


def _keys() -> PublishedKeys:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return PublishedKeys(key, key)


def every_app() -> list[FastAPI]:
    """One of each HTTP app meterseal serves (their handlers are not called here)."""
    people = People(MemoryAccounts())
    unused: Any = SimpleNamespace(verifiers={}, counts={}, pending=lambda: 0)
    return [
        create_billing_app(unused, people.authenticator, MemoryAccounts()),
        create_portal_app(unused, people.authenticator, MemoryAccounts(), _keys()),
        create_cas_app(unused, people.authenticator),
        create_app(unused),
        admin_app(Idle(), Lifecycle()),
        create_gateway_app(unused, unused, unused, KvsMetrics()),
        create_cascadb_app(unused, people.authenticator),
        create_jobs_app(unused, unused, people.authenticator),
    ]


def test_every_route_of_every_app_has_the_rule_of_the_table() -> None:
    apps = every_app()
    assert {app.title for app in apps} == set(EXPECTED)
    for app in apps:
        check_access(app)
        assert route_rules(app) == EXPECTED[app.title], app.title


def _apps_made_in(root: Path) -> set[str]:
    """Modules that make an HTTP app: they call `service_app(TITLE, ...)`."""
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "service_app"
                and node.args  # the typer app of the same name takes keywords only
            ):
                found.add(str(path.relative_to(root)))
    return found


def test_the_table_covers_every_app_the_source_makes() -> None:
    # A new app is a new module here: add it to every_app() and to EXPECTED.
    root = Path(meterseal.__file__).parent
    assert _apps_made_in(root) == {
        "billing/api.py",
        "trust/api.py",
        "acquisition/http.py",
        "runtime/lifecycle.py",
        "kvs/gateway.py",
        "cascadb/http_api.py",
        "jobs/http_api.py",
    }
