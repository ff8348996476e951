"""The administrator provisions a meter from the portal: `/portal/admin/meters/new`.

The form takes one meter's key made at the factory, pasted as PEM: a PKCS#10 request, which the
deployment CA certifies as `meterseal meters certify` does, or a trusted manufacturer's meter
certificate, imported as `meterseal meters import-cert` does (both through
`meter.enrolment.Enrolment`); with the meter's customer, region and optionally its suite and
id. A good form registers the meter and records the change in one transaction of the store; a
bad one is said on the form (400), recorded as refused, and changes nothing.
`role:administrator` both ways.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from meterseal.accounts.authn import allow_larger_form, form_fields
from meterseal.accounts.changes import DONE
from meterseal.crypto.manufacturer import Certified
from meterseal.crypto.suites import SUITES, CipherSuite
from meterseal.errors import MetersealError
from meterseal.meter.enrolment import Enrolment
from meterseal.portal.admin_changes import Recorder
from meterseal.portal.admin_render import BadInput, Render, field_name, moment
from meterseal.runtime.auth import Rule, access, identity_of

NEW_METER = "/portal/admin/meters/new"
ACTION = "meter.provision"
PROVISION_FORM = 16 * 1024  # bytes: a pasted manufacturer's certificate with a long chain of names
SOURCES = {"csr": "a certificate request (PKCS#10)", "manufacturer": "a manufacturer's certificate"}
NO_ENROLMENT = (
    "this portal cannot provision meters (it was started without the deployment CA's key "
    "and a writable store)"
)


def _suite(form: dict[str, str]) -> CipherSuite | None:
    name = form.get("suite", "")
    if name and name not in SUITES:
        raise BadInput(f"suite: one of {', '.join(SUITES)}, or the key's")
    return SUITES[name] if name else None


def _summary(done: Certified) -> str:
    der = done.certificate.public_bytes(serialization.Encoding.DER)
    return (
        f"{done.suite.name}, from {done.source}, serial {done.certificate.serial_number:x}, "
        f"sha256 {hashlib.sha256(der).hexdigest()[:16]}"
    )


def add_meter_provisioning(
    app: FastAPI, render: Render, enrolment: Enrolment | None, recorder: Recorder, rule: Rule
) -> None:
    """Add the meter provisioning form and its POST."""
    allow_larger_form(app, NEW_METER, PROVISION_FORM)

    def form_page(request: Request, status: int = 200, problem: str = "", **sent: str) -> Response:
        values = {"how": "csr", "pem": "", "meter": "", "customer": "", "region": "R01",
                  "suite": ""} | sent  # fmt: skip
        return render(
            request, "staff/admin_meter_new.html", status, problem=problem, form=values,
            sources=SOURCES, suites=list(SUITES), changeable=enrolment is not None,
            no_change=NO_ENROLMENT,
        )  # fmt: skip

    @app.get(NEW_METER, include_in_schema=False, dependencies=[access(rule)])
    def new_meter(request: Request) -> Response:
        return form_page(request)

    @app.post(NEW_METER, include_in_schema=False, dependencies=[access(rule)])
    async def provision(request: Request) -> Response:
        form = await form_fields(request)
        sent = {k: form.get(k, "") for k in ("how", "pem", "meter", "customer", "region", "suite")}
        identity = identity_of(request)
        if enrolment is None:
            raise HTTPException(503, NO_ENROLMENT)
        named = sent["meter"].strip() or "(named by its key)"
        try:
            how = sent["how"]
            if how not in SOURCES:
                raise BadInput("choose what you paste: a certificate request or a certificate")
            meter_id = field_name(form, "meter", "meter id", required=False) or None
            customer = field_name(form, "customer", "customer id")
            region = field_name(form, "region", "region")
            suite = _suite(form)
            pem, now = sent["pem"].encode(), moment(recorder.clock)
            if how != "csr" and meter_id is not None:
                raise BadInput("a manufacturer's certificate names its meter: leave the id empty")

            def register() -> Certified:
                assert enrolment is not None
                if how == "csr":
                    return enrolment.certify(pem, meter_id, customer, region, suite, now)
                return enrolment.import_certificate(pem, customer, region, suite, now)

            def entry(done: Certified) -> tuple[str, str, str]:
                return (
                    done.meter_id,
                    DONE,
                    f"customer {customer}, region {region}, {_summary(done)}",
                )

            # Registered and recorded in one transaction of the store (Recorder.make).
            done = await recorder.made(identity, ACTION, register, entry)
        except (BadInput, MetersealError) as exc:
            reason = exc.diagnostics() if isinstance(exc, MetersealError) else str(exc)
            await recorder.refused(identity, ACTION, named, reason)
            return form_page(request, 400, reason, **sent)
        detail = entry(done)[2]
        return render(
            request, "staff/admin_done.html", title="Meter provisioned",
            said=f"meter {done.meter_id} provisioned: {detail}",
            back=("/portal/admin/meters", "Back to the meters"),
        )  # fmt: skip
