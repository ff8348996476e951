"""What the administrator's pages share: the page renderer, field checks, the time of a change."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Protocol

from fastapi import Request
from fastapi.responses import Response

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # customer, region and meter ids


class Render(Protocol):
    """The portal's page renderer (app._Pages.render)."""

    def __call__(
        self, request: Request, name: str, status: int = 200, **context: object
    ) -> Response: ...


class BadInput(ValueError):
    """A form field that cannot be used; the message names the field and what it needs."""


def field_name(form: dict[str, str], key: str, label: str, *, required: bool = True) -> str:
    """A form's id-like field (letters, digits, . _ @ -, up to 64); BadInput naming `label`."""
    value = form.get(key, "").strip()
    if not value and not required:
        return ""
    if not NAME.fullmatch(value):
        raise BadInput(
            f"{label}: 1 to 64 letters, digits or . _ @ - (starting with a letter or digit)"
        )
    return value


def moment(clock: Callable[[], float]) -> dt.datetime:
    """The clock's now as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(clock(), dt.UTC)
