"""The administrator publishes a tariff from the portal: `/portal/admin/tariffs/new`.

The form holds one tariff as TOML (the format of docs/tariffs.md; `?from=ID` starts from that
tariff's newest version with the next version number). Publishing reads it with the CLI's
reader (`billing.tariff.loads_tariff`) and stores it with `meterseal tariffs add`'s store call
(`BillStore.add_tariff`): a published version never changes, so the same content again
changes nothing (said, 409) and other content under a published version is refused. Bad TOML
or a bad field is said on the form with the field's name (400). Each outcome is recorded in the
change log. `role:administrator` both ways.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Protocol

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from meterseal.accounts.authn import form_fields
from meterseal.accounts.changes import DONE
from meterseal.billing.tariff import Tariff, TariffBook, loads_tariff
from meterseal.errors import MetersealError
from meterseal.portal.admin_changes import Recorder
from meterseal.portal.admin_render import Render, moment
from meterseal.runtime.auth import Rule, access, identity_of

NEW_TARIFF = "/portal/admin/tariffs/new"
ACTION = "tariff.publish"
NO_PUBLISHING = "this portal cannot publish tariffs (it was started without a writable store)"
STARTER = """tariff_id = "my-tariff"
version = 1
currency = "EUR"
timezone = "Europe/Berlin"
standing_charge_per_day = "0.45"

[rates]
kind = "flat"
price_per_kwh = "0.312"
"""


class TariffPublisher(Protocol):
    """Where tariffs are published and read (storage's BillStore on a writable store)."""

    def add_tariff(self, tariff: Tariff, *, now: dt.datetime) -> bool:
        """Keep `tariff`; False if it was there already. StorageError if the version differs."""
        ...

    def tariff_book(self) -> TariffBook:
        """Every stored tariff."""
        ...


def _next_version(book: TariffBook, tariff_id: str) -> str:
    latest = book.latest(tariff_id)  # TariffError if unknown
    return dataclasses.replace(latest, version=latest.version + 1).to_toml()


def add_tariff_publishing(
    app: FastAPI, render: Render, publisher: TariffPublisher | None, recorder: Recorder, rule: Rule
) -> None:
    """Add the tariff form and its POST."""

    def form_page(request: Request, text: str, status: int = 200, problem: str = "") -> Response:
        return render(
            request, "staff/admin_tariff_new.html", status, text=text, problem=problem,
            changeable=publisher is not None, no_change=NO_PUBLISHING,
        )  # fmt: skip

    @app.get(NEW_TARIFF, include_in_schema=False, dependencies=[access(rule)])
    def new_tariff(
        request: Request, start: Annotated[str, Query(alias="from", max_length=64)] = ""
    ) -> Response:
        if not start or publisher is None:
            return form_page(request, STARTER)
        try:
            return form_page(request, _next_version(publisher.tariff_book(), start))
        except MetersealError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post(NEW_TARIFF, include_in_schema=False, dependencies=[access(rule)])
    async def publish(request: Request) -> Response:
        form = await form_fields(request)
        text = form.get("toml", "")
        identity = identity_of(request)
        if publisher is None:
            raise HTTPException(503, NO_PUBLISHING)
        try:
            tariff = loads_tariff(text, "the form")
            name, digest = f"{tariff.tariff_id} v{tariff.version}", tariff.digest().hex()

            def entry(added: bool) -> tuple[str, str, str]:
                if added:
                    return name, DONE, f"{tariff.kind}, digest {digest}"
                return name, "refused: already published", f"digest {digest}"

            # Published and recorded in one transaction of the store (Recorder.make).
            added = await recorder.made(
                identity, ACTION, lambda: publisher.add_tariff(tariff, now=moment(recorder.clock)),
                entry,
            )  # fmt: skip
        except MetersealError as exc:
            await recorder.refused(identity, ACTION, _named(text), exc.diagnostics())
            return form_page(request, text, 400, exc.diagnostics())
        if not added:
            said = f"{name} is already published with this content (digest {digest[:16]}…)"
            return form_page(request, text, 409, said)
        return render(
            request, "staff/admin_done.html", title="Tariff published",
            said=f"tariff {name} published (digest {digest})",
            back=("/portal/admin/tariffs", "Back to the tariffs"),
        )  # fmt: skip


def _named(text: str) -> str:
    """What a refused form seemed to name (its tariff_id line), for the change log."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "tariff_id":
            return value.strip().strip('"')[:64] or "(unnamed)"
    return "(unnamed)"
