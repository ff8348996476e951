"""The administrator's CAS pages: policies and secrets' names, rotating a secret, revoking one.

`/portal/admin/cas` lists the CAS's allow rules, revoked measurements and secrets (names and
versions: the CAS never serves a value). Rotating a secret, revoking a secret (no version so
far is released until it is rotated) and revoking a measurement (which takes it out of every
rule) each have a confirmation page whose CSRF-protected form names the
object, which must be the page's. Every call goes to the CAS's own HTTP API
(`trust.admin_client.CasAdmin`) with the signed-in administrator's session token, so the CAS's
route rules decide as for any administrator (the CAS must share the deployment's accounts and
token key, as `cas serve` and `bills serve` of one deployment do). Each outcome, the CAS's
refusals included, goes to the change log. All routes `role:administrator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterseal.accounts.authn import form_fields
from meterseal.errors import MetersealError
from meterseal.portal.admin_changes import Recorder
from meterseal.portal.admin_render import Render
from meterseal.runtime.auth import Rule, access, identity_of
from meterseal.trust.admin_client import CasAdmin

CAS_PAGE = "/portal/admin/cas"
ROTATE = "/portal/admin/cas/secrets/{name}/rotate"
REVOKE = "/portal/admin/cas/measurements/{measurement}/revoke"
WITHDRAW = "/portal/admin/cas/secrets/{name}/revoke"
NO_CAS = "this portal reaches no CAS (start it with `bills serve --cas URL`)"
SecretName = Annotated[str, Path(max_length=128)]
MeasurementHex = Annotated[str, Path(max_length=64)]


def _state(cas: CasAdmin, credential: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return cas.policies(credential), cas.secrets(credential)


def add_cas_routes(
    app: FastAPI,
    render: Render,
    cas: CasAdmin | None,
    credential: Callable[[Request], str],
    recorder: Recorder,
    rule: Rule,
) -> None:
    """Add the CAS's list page and the rotation and revocation confirmations and forms."""

    async def reach(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if cas is None:
            raise HTTPException(503, NO_CAS)
        try:
            return await run_in_threadpool(_state, cas, credential(request))
        except MetersealError as exc:
            raise HTTPException(502, exc.diagnostics()) from None

    @app.get(CAS_PAGE, include_in_schema=False, dependencies=[access(rule)])
    async def cas_page(request: Request) -> Response:
        policies, secrets = await reach(request)
        gone = {r["measurement"] for r in policies["revoked"]}
        return render(
            request, "staff/admin_cas.html", rules=policies["rules"],
            revoked=policies["revoked"], secrets=secrets, gone=gone,
        )  # fmt: skip

    async def secret_named(request: Request, name: str) -> dict[str, Any]:
        _, secrets = await reach(request)
        found = next((s for s in secrets if s["name"] == name), None)
        if found is None:
            raise HTTPException(404, f"no secret {name!r}")
        return found

    async def confirmed(
        request: Request, field: str, value: str, action: str, call: CasCall
    ) -> tuple[str, Any]:
        """Run `call` once the form names this object; a CAS refusal goes to the change log."""
        form = await form_fields(request)
        if form.get(field) != value:
            raise HTTPException(400, f"the form names another {field}: confirm this one")
        if cas is None:
            raise HTTPException(503, NO_CAS)
        reason = form.get("reason", "").strip()[:500]
        try:
            done = await run_in_threadpool(call, cas, credential(request), value, reason)
        except MetersealError as exc:
            await recorder.refused(identity_of(request), action, value, exc.diagnostics())
            raise HTTPException(_status(exc), exc.diagnostics()) from None
        return reason, done

    @app.get(ROTATE, include_in_schema=False, dependencies=[access(rule)])
    async def confirm_rotate(request: Request, name: SecretName) -> Response:
        found = await secret_named(request, name)
        return render(request, "staff/admin_cas_rotate.html", secret=found, problem="")

    @app.post(ROTATE, include_in_schema=False, dependencies=[access(rule)])
    async def rotate(request: Request, name: SecretName) -> Response:
        action = "cas.secret.rotate"
        _, done = await confirmed(request, "secret", name, action, _rotate)
        await recorder.done(identity_of(request), action, name, f"now version {done.version}")
        return render(
            request, "staff/admin_done.html", title="Secret rotated",
            said=f"secret {name} rotated to version {done.version}: workers get it at their "
            "next fetch", back=(CAS_PAGE, "Back to the CAS"),
        )  # fmt: skip

    @app.get(WITHDRAW, include_in_schema=False, dependencies=[access(rule)])
    async def confirm_withdraw(request: Request, name: SecretName) -> Response:
        found = await secret_named(request, name)
        return render(request, "staff/admin_cas_withdraw.html", secret=found)

    @app.post(WITHDRAW, include_in_schema=False, dependencies=[access(rule)])
    async def withdraw(request: Request, name: SecretName) -> Response:
        action = "cas.secret.revoke"
        reason, done = await confirmed(request, "secret", name, action, _withdraw)
        said = f"through v{done.version}; reason: {reason}"
        await recorder.done(identity_of(request), action, name, said)
        return render(
            request, "staff/admin_done.html", title="Secret revoked",
            said=f"secret {name} revoked through version {done.version}: the CAS releases it "
            "to nobody until it is rotated", back=(CAS_PAGE, "Back to the CAS"),
        )  # fmt: skip

    @app.get(REVOKE, include_in_schema=False, dependencies=[access(rule)])
    async def confirm_revoke(request: Request, measurement: MeasurementHex) -> Response:
        policies, _ = await reach(request)
        rules = [r for r in policies["rules"] if r["measurement"] == measurement]
        gone = any(r["measurement"] == measurement for r in policies["revoked"])
        if not rules and not gone:
            raise HTTPException(404, f"no rule names measurement {measurement[:80]!r}")
        return render(
            request, "staff/admin_cas_revoke.html", measurement=measurement, rules=rules,
            gone=gone,
        )  # fmt: skip

    @app.post(REVOKE, include_in_schema=False, dependencies=[access(rule)])
    async def revoke(request: Request, measurement: MeasurementHex) -> Response:
        action = "cas.measurement.revoke"
        reason, done = await confirmed(request, "measurement", measurement, action, _revoke)
        received = ", ".join(f"{n} v{v}" for n, v in done.received) or "nothing"
        state = "revoked" if done.new else "already revoked"
        await recorder.done(identity_of(request), action, measurement, f"{state}; reason: {reason}")
        return render(
            request, "staff/admin_cas_revoked.html", measurement=measurement, state=state,
            received=done.received, said=received,
        )  # fmt: skip


# One CAS call per confirmed action: (client, credential, object, reason) -> the CAS's answer.
CasCall = Callable[[CasAdmin, str, str, str], Any]


def _rotate(cas: CasAdmin, credential: str, name: str, reason: str) -> Any:
    return cas.rotate(credential, name)


def _withdraw(cas: CasAdmin, credential: str, name: str, reason: str) -> Any:
    return cas.revoke_secret(credential, name, reason)


def _revoke(cas: CasAdmin, credential: str, measurement: str, reason: str) -> Any:
    return cas.revoke(credential, measurement, reason)


def _status(exc: MetersealError) -> int:
    """A refusal's status for the page: the CAS's 400, 404 and 409 as they are, else 502.

    The CAS refusing the administrator's own credential (401, 403) is the portal's problem
    with the CAS (not the same accounts or token key), not the page's: 502 with its reason.
    """
    status = getattr(exc, "status", 502)
    return status if status in (400, 404, 409) else 502
