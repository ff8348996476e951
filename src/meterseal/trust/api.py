"""HTTP API of the CAS on the runtime's `service_app` (/healthz, /v1/counters, OpenAPI).

* `POST /v1/nonce`: a fresh single-use nonce (hex) and when it expires; 429 (Retry-After)
  while the caller's address, or all callers, hold their cap of unused nonces (`trust.limits`).
* `POST /v1/release`: body application/cbor {"stage": str, "quote": bytes, "secrets": [str]};
  200 application/cbor {"secrets": {name: {"version", "sealed"}}, "measurement", "backend",
  "assurance"}; 403 refused (attestation, nonce or policy), 400 malformed, 413 too large,
  415 not CBOR. Every release and refusal is in the CAS log, except the refusals that moved
  no nonce beyond their source's budget: those are counted (`refused_unlogged`).
* `GET /v1/policies`, `GET /v1/secrets` (metadata only, never a value): administrators.
* `POST /v1/secrets/{name}/rotate` (a fresh random value as long as the latest: secrets of a
  fixed form, such as key bundles, are refused with 409 and rotate with `meterseal cas secrets
  rotate --file`), `POST /v1/measurements/{hex}/revoke` (body JSON {"reason": str}: the
  measurement gets nothing from its next request; the answer names the secrets it received,
  to be rotated), `POST /v1/secrets/{name}/revoke` (body JSON {"reason": str}: every version
  so far is released to nobody until a rotation stores a newer one): administrators. Each is
  in the CAS log.
* `GET /v1/log`: administrators and auditors. `GET /v1/attestation` (the accepted backends
  and what each guarantees): public.
* `POST /v1/auth/token`, `GET /v1/auth/whoami`: sign-in (meterseal.accounts), with an
  authenticator; without one every protected route is 401.

Errors are `{"detail": "one reason"}`; a store that cannot be reached is 503. Other writes
(importing secrets, allow rules) are not on the API: they go through `meterseal cas …` on the
store, by whoever holds the store and the deployment's master key.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Annotated, Any

import cbor2
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from meterseal.accounts.api import add_account_routes
from meterseal.accounts.authn import AccountAuthenticator
from meterseal.accounts.model import Role
from meterseal.crypto import cose
from meterseal.errors import MetersealError
from meterseal.runtime.auth import PROVEN_BY_BODY, PUBLIC, AnyRole, HasRole, access
from meterseal.runtime.connections import RefusalLog, source_key
from meterseal.runtime.http import service_app
from meterseal.runtime.refusals import answer_store_unavailable
from meterseal.trust.attestation import MAX_QUOTE_BYTES, NO_HARDWARE, SIMULATED
from meterseal.trust.cas import Cas, Release, ReleaseRequest, check_log, decode_entry
from meterseal.trust.errors import ReleaseRefused, TrustError
from meterseal.trust.limits import TooManyNonces
from meterseal.trust.measurement import Measurement

MAX_BODY = MAX_QUOTE_BYTES + 4096
CBOR = "application/cbor"
BODY_TIMEOUT = 10.0
REFUSAL_LOG_INTERVAL = 10.0  # seconds between summary lines of refusals nothing else records
log = logging.getLogger(__name__)
ADMINISTRATOR = HasRole(Role.ADMINISTRATOR.value)
ADMINISTRATOR_OR_AUDITOR = AnyRole((Role.ADMINISTRATOR.value, Role.AUDITOR.value))


class Detail(BaseModel):
    """An error with one reason."""

    detail: str


class NonceView(BaseModel):
    """A nonce to put in the next quote (hex), fresh until `expires_at` (Unix seconds)."""

    nonce: str
    expires_at: float
    ttl: float


class RuleView(BaseModel):
    """An allow rule."""

    id: int
    stage: str
    measurement: str
    secret: str
    added_at: str


class RevocationView(BaseModel):
    """A revoked measurement."""

    measurement: str
    revoked_at: str
    reason: str


class PoliciesView(BaseModel):
    """The allow rules and the revoked measurements (revocation overrides every rule)."""

    rules: list[RuleView]
    revoked: list[RevocationView]


class SecretView(BaseModel):
    """A secret's metadata; the API never serves a value."""

    name: str
    latest_version: int
    versions: int
    updated_at: str
    revoked_through: int = 0  # versions up to this one are withdrawn (0: none)


class SecretsView(BaseModel):
    """Every secret the CAS holds, by name."""

    secrets: list[SecretView]


class RotatedView(BaseModel):
    """A secret's new version."""

    name: str
    version: int


class SecretRevokedView(BaseModel):
    """A secret's revocation: through which version, and whether it was new."""

    name: str
    version: int
    new: bool


class RevokeBody(BaseModel):
    """Why a measurement is revoked (kept in the CAS log)."""

    reason: str = Field(default="", max_length=500)


class RevokedView(BaseModel):
    """A revocation's outcome: was it new, and what the measurement received (to rotate)."""

    measurement: str
    new: bool
    received: list[tuple[str, int]]


class LogView(BaseModel):
    """A page of the CAS log and its current head (size, Merkle root)."""

    size: int
    root: str
    entries: list[dict[str, Any]]
    verified: bool | None  # with ?verify=true: the whole log re-derived, MACs checked
    problems: list[str]


class AttestationView(BaseModel):
    """The quote backends this CAS accepts and what each guarantees."""

    backends: dict[str, str]


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _body(request: Request) -> bytes:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != CBOR:
        raise _Refused(415, f"Content-Type must be {CBOR}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise _Refused(413, f"body over {MAX_BODY} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise _Refused(408, "body not received in time") from None
    except ClientDisconnect:
        raise _Refused(400, "client disconnected") from None
    return b"".join(chunks)


def parse_release(body: bytes) -> ReleaseRequest:
    """A release request from its CBOR body; _Refused(400) naming what is wrong."""
    try:
        item = cose.loads_strict(body)
    except cose.CoseFormatError:
        raise _Refused(400, "the body is not one CBOR item") from None
    if not isinstance(item, cose.MAP_TYPES) or set(item) != {"stage", "quote", "secrets"}:
        raise _Refused(400, "the body is a map of stage, quote and secrets")
    stage, quote, names = item["stage"], item["quote"], item["secrets"]
    if not isinstance(stage, str) or not isinstance(quote, bytes):
        raise _Refused(400, "stage is a text string and quote a byte string")
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise _Refused(400, "secrets is an array of text strings")
    return ReleaseRequest(stage, quote, tuple(names))


def _release_body(release: Release) -> bytes:
    secrets = {s.name: {"version": s.version, "sealed": s.sealed} for s in release.secrets}
    return cbor2.dumps(
        {
            "secrets": secrets,
            "measurement": release.measurement.digest,
            "backend": release.backend,
            "assurance": release.assurance,
        }
    )


def _source(request: Request) -> str:
    """What the CAS's per-source caps count against: the peer's address (IPv6: its /64)."""
    return source_key(request.client.host) if request.client else "unknown"


def create_cas_app(cas: Cas, authenticator: AccountAuthenticator | None = None) -> FastAPI:
    """The CAS's HTTP API over `cas`; counters on `app.state.counts`."""
    counts: Counter[str] = Counter()
    # Nonces refused and refusals the CAS log did not take: one summary line per interval.
    quiet = RefusalLog("meterseal CAS", REFUSAL_LOG_INTERVAL, log, what="requests")
    app = service_app(
        "meterseal CAS",
        "Configuration and attestation service: releases secrets to attested trusted stages. "
        f"Backends: {', '.join(sorted(cas.verifiers))} (simulated: no hardware guarantee).",
        counts,
        lambda: {"cas": dict(counts)},
    )
    app.state.refusal_logs.append(quiet)  # its last lines, when the server stops
    if authenticator is not None:
        add_account_routes(app, authenticator, None)

    answer_store_unavailable(app, counts, log)

    @app.post(
        "/v1/nonce",
        summary="A fresh single-use nonce",
        response_model=NonceView,
        dependencies=[access(PUBLIC)],  # a nonce is worth nothing without an attested quote
        responses={429: {"model": Detail}, 503: {"model": Detail}},
    )
    async def nonce(request: Request) -> Response:
        source = _source(request)
        try:
            issued = await run_in_threadpool(cas.issue_nonce, source)
        except TooManyNonces as full:
            counts[full.counter] += 1
            quiet.note(full.counter, source)
            headers = {"Retry-After": str(full.retry_after)}
            return JSONResponse({"detail": full.reason}, 429, headers)
        counts["nonces"] += 1
        view = NonceView(nonce=issued.nonce.hex(), expires_at=issued.expires_at, ttl=cas.nonce_ttl)
        return JSONResponse(view.model_dump())

    @app.post(
        "/v1/release",
        summary="Release secrets to an attested worker",
        dependencies=[access(PROVEN_BY_BODY)],  # the quote attests the worker's code
        responses={
            200: {"content": {CBOR: {"schema": {"type": "string", "format": "binary"}}}},
            **{s: {"model": Detail} for s in (400, 403, 408, 413, 415, 503)},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {CBOR: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def release(request: Request) -> Response:
        source = _source(request)
        try:
            parsed = parse_release(await _body(request))
            result = await run_in_threadpool(cas.release, parsed, source)
        except _Refused as refused:
            counts[f"bad_request_{refused.status}"] += 1
            return JSONResponse({"detail": refused.reason}, refused.status)
        except ReleaseRefused as refused:
            counts["refused"] += 1
            if not refused.logged:
                counts["refused_unlogged"] += 1
                quiet.note("refused_unlogged", source)
            return JSONResponse({"detail": refused.reason}, refused.status)
        except TrustError as exc:  # our own state is broken (e.g. another master key)
            log.error("CAS cannot release: %s", exc)
            counts["cas_broken"] += 1
            return JSONResponse({"detail": f"the CAS cannot release: {exc}"}, 503)
        counts["released"] += 1
        return Response(
            _release_body(result),
            media_type=CBOR,
            headers={"X-Meterseal-Assurance": result.assurance},
        )

    @app.get(
        "/v1/policies",
        summary="Allow rules and revoked measurements",
        dependencies=[access(ADMINISTRATOR)],
    )
    def policies() -> PoliciesView:
        rules = [
            RuleView(
                id=r.id,
                stage=r.stage,
                measurement=r.measurement.hex(),
                secret=r.secret,
                added_at=r.added_at.isoformat(),
            )
            for r in cas.state.rules()
        ]
        revoked = [
            RevocationView(
                measurement=r.measurement.hex(),
                revoked_at=r.revoked_at.isoformat(),
                reason=r.reason,
            )
            for r in cas.state.revocations()
        ]
        return PoliciesView(rules=rules, revoked=revoked)

    @app.get(
        "/v1/secrets",
        summary="Secrets' names and versions (never values)",
        dependencies=[access(ADMINISTRATOR)],
    )
    def secrets() -> SecretsView:
        infos = cas.state.secret_infos()
        withdrawn = {i.name: cas.revoked_through(i.name) for i in infos}
        return SecretsView(
            secrets=[
                SecretView(
                    name=i.name,
                    latest_version=i.latest_version,
                    versions=i.versions,
                    updated_at=i.updated_at.isoformat(),
                    revoked_through=withdrawn.get(i.name, 0),
                )
                for i in infos
            ]
        )

    @app.post(
        "/v1/secrets/{name}/rotate",
        summary="Rotate a secret to a fresh random value",
        dependencies=[access(ADMINISTRATOR)],
        responses={s: {"model": Detail} for s in (400, 404, 409, 503)},
    )
    def rotate(name: Annotated[str, Path(max_length=128)]) -> Response:
        from meterseal.services.trusted_setup import checked_secret

        if cas.state.latest_secret(name) is None:
            return JSONResponse({"detail": f"no secret {name!r}"}, 404)
        try:
            version = cas.rotate(name, lambda n, v: checked_secret(n, v, "random bytes"))
        except ReleaseRefused as refused:
            return JSONResponse({"detail": refused.reason}, refused.status)
        except MetersealError as exc:  # the secret holds key material of a fixed form
            reason = (
                f"{name} cannot take random bytes ({exc}): rotate it with "
                f"`meterseal cas secrets rotate {name} --file NEW`"
            )
            return JSONResponse({"detail": reason}, 409)
        counts["rotated"] += 1
        return JSONResponse(RotatedView(name=name, version=version).model_dump())

    @app.post(
        "/v1/secrets/{name}/revoke",
        summary="Revoke a secret: no version so far is released until it is rotated",
        dependencies=[access(ADMINISTRATOR)],
        responses={s: {"model": Detail} for s in (400, 404, 503)},
    )
    def revoke_secret(name: Annotated[str, Path(max_length=128)], body: RevokeBody) -> Response:
        if cas.state.latest_secret(name) is None:
            return JSONResponse({"detail": f"no secret {name!r}"}, 404)
        try:
            done = cas.revoke_secret(name, body.reason)
        except ReleaseRefused as refused:
            return JSONResponse({"detail": refused.reason}, refused.status)
        counts["secrets_revoked"] += 1
        view = SecretRevokedView(name=name, version=done.version, new=done.new)
        return JSONResponse(view.model_dump())

    @app.post(
        "/v1/measurements/{measurement}/revoke",
        summary="Revoke a measurement: it gets nothing from its next request",
        dependencies=[access(ADMINISTRATOR)],
        responses={400: {"model": Detail}, 503: {"model": Detail}},
    )
    def revoke(
        measurement: Annotated[str, Path(min_length=64, max_length=64)], body: RevokeBody
    ) -> Response:
        try:
            chosen = Measurement.from_hex(measurement)
        except (MetersealError, ValueError) as exc:
            return JSONResponse({"detail": f"not a measurement: {exc}"}, 400)
        outcome = cas.revoke(chosen, body.reason)
        counts["revoked"] += 1
        view = RevokedView(measurement=chosen.hex, new=outcome.new, received=list(outcome.received))
        return JSONResponse(view.model_dump())

    @app.get(
        "/v1/log", summary="A page of the CAS log", dependencies=[access(ADMINISTRATOR_OR_AUDITOR)]
    )
    def log_page(
        after: Annotated[int, Query(ge=-1, le=2**62)] = -1,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        verify: bool = False,
    ) -> LogView:
        everything = cas.state.log_rows()
        page = [r for r in everything if r.seq > after][:limit]
        problems = check_log(everything, cas.vault) if verify else []
        head = everything[-1].root.hex() if everything else ""
        entries = [decode_entry(r.entry) | {"leaf_hash": r.leaf_hash.hex()} for r in page]
        return LogView(
            size=len(everything),
            root=head,
            entries=entries,
            verified=(not problems) if verify else None,
            problems=problems,
        )

    @app.get(
        "/v1/attestation",
        summary="Accepted quote backends and their guarantees",
        dependencies=[access(PUBLIC)],
    )
    def attestation() -> AttestationView:
        guarantee = {SIMULATED: NO_HARDWARE}
        return AttestationView(
            backends={b: guarantee.get(b, "hardware") for b in sorted(cas.verifiers)}
        )

    return app
