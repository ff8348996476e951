"""Why a store cannot be opened or reached, in one line a person can act on (no password).

`store_url` parses a `--store` URL into a ConfigurationError when it is malformed or names a
database meterseal does not store on; `unreachable` turns what the driver raised on connecting
(sqlalchemy's OperationalError around psycopg's or sqlite3's) into a `StoreUnreachable` that
says which store (URL shown with its password hidden), what went wrong and what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy as sa

from meterseal.errors import ConfigurationError, StorageError
from meterseal.runtime.address import hide_password

URL_FORMS = (
    "sqlite:///PATH, postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DATABASE "
    "or cascadb:///DIRECTORY"
)
ENGINES = ("sqlite", "postgresql", "cascadb")
# psycopg prefixes its reason with where it tried: keep the reason.
_PG_PREFIX = re.compile(
    r'^(connection failed: )?(connection to server at "[^"]*",? (port \d+ )?failed: )?'
)
_PG_ADVICE = (
    ("connection refused", "is PostgreSQL running there and listening on that port?"),
    ("timeout expired", "is the host reachable, or a firewall dropping the connection?"),
    ("failed to resolve host", "check the host name in the URL"),
    ("password authentication failed", "check the user and password in the URL"),
    ("role", "check the user in the URL or create that role"),
    ("database", "create the database (`createdb NAME`) or fix its name in the URL"),
    ("no password supplied", "put the password in the URL or in ~/.pgpass"),
)


class StoreUnreachable(StorageError):
    """The store could not be opened or reached; says which (password hidden) and why."""

    def __init__(self, shown_url: str, reason: str, advice: str) -> None:
        super().__init__(f"cannot reach the store {shown_url}: {reason}")
        self.advice = advice

    def diagnostics(self) -> str:
        """What, where and what to do, on one line."""
        return f"{self} ({self.advice})" if self.advice else str(self)


def shown(url: str | sa.URL) -> str:
    """`url` as text with any password replaced by ***."""
    if isinstance(url, sa.URL):
        return url.render_as_string(hide_password=True)
    return hide_password(url)


def store_url(url: str | sa.URL) -> sa.URL:
    """The parsed store URL; ConfigurationError if malformed or not SQLite/PostgreSQL."""
    try:
        parsed = sa.make_url(url)
        parsed.get_dialect()
    except sa.exc.NoSuchModuleError:
        raise ConfigurationError(
            f"the store URL {shown(url)} names a database or driver meterseal cannot use; "
            f"give {URL_FORMS}"
        ) from None
    except (sa.exc.ArgumentError, ValueError):
        raise ConfigurationError(
            f"the store URL {shown(url)!r} is malformed; give {URL_FORMS}"
        ) from None
    if parsed.get_backend_name() not in ENGINES:
        raise ConfigurationError(
            f"meterseal stores on SQLite, PostgreSQL or CascaDB, not {parsed.get_backend_name()} "
            f"({shown(parsed)}); give {URL_FORMS}"
        )
    return parsed


def unreachable(url: sa.URL, error: BaseException) -> StoreUnreachable:
    """The one-line StoreUnreachable for what connecting to `url` raised."""
    cause = getattr(error, "orig", None) or error
    text = " ".join(str(cause).split("\n")[0].split())  # first line, single spaces
    if url.password:
        text = text.replace(str(url.password), "***")
    if url.get_backend_name() == "sqlite":
        return StoreUnreachable(_sqlite_shown(url), *_sqlite_reason(url, text))
    reason = _PG_PREFIX.sub("", text).removeprefix("FATAL: ")
    advice = next((a for key, a in _PG_ADVICE if key in reason.lower()), "")
    return StoreUnreachable(shown(url), reason or type(cause).__name__, advice)


def _sqlite_shown(url: sa.URL) -> str:
    """The SQLite store as given (sqlite:///PATH), not the read-only URI it is opened with."""
    database = url.database or ""
    if url.query.get("uri") == "true" and database.startswith("file:"):
        return f"sqlite:///{database.removeprefix('file:')}"
    return shown(url)


def _sqlite_reason(url: sa.URL, text: str) -> tuple[str, str]:
    database = url.database or ""
    path = Path(database.removeprefix("file:"))
    if database in ("", ":memory:") or "unable to open" not in text:
        return text, ""
    if not path.parent.is_dir():
        return f"directory {path.parent} does not exist", "create it or choose another --store"
    if not path.exists():
        if not os.access(path.parent, os.W_OK):
            return f"directory {path.parent} is not writable", "choose another --store"
        return f"{path} does not exist", "run a writer (e.g. `meterseal serve`) once to create it"
    if path.is_dir():
        return f"{path} is a directory", "give the path of a database file"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this user", "fix its owner or mode (0600)"
    return text, ""
