"""The configuration parameters of CascaDB's PostgreSQL sessions: what it reports and SHOWs,
and which names a SET or a startup packet may give.

CascaDB follows PostgreSQL 15's protocol and SQL (its answers are compared with PostgreSQL
15's), so it says it is version 15.0 of PostgreSQL, then its own name, in the form clients
parse (libpq's server_version, SQLAlchemy's version() pattern). A name a client may set
(`ACCEPTED`) changes nothing CascaDB does; a name whose value CascaDB has and cannot change
(`FIXED`) may be set to that value only; PostgreSQL's read-only names (`READ_ONLY`) are never
set; any other name is unknown (42704), at startup and in a SET alike, so that no setting a
client asks for is silently dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from meterseal import __version__
from meterseal.cascadb import errors
from meterseal.cascadb.parsing import boolean

if TYPE_CHECKING:  # (engine imports what imports this)
    from meterseal.cascadb.engine import Result, Session

SERVER_VERSION = f"15.0 (CascaDB meterseal {__version__})"
VERSION = f"PostgreSQL {SERVER_VERSION}"  # version()'s answer
SCHEMA = "public"  # CascaDB's one schema, named as PostgreSQL's default one

# what changes nothing CascaDB does: its client encoding is UTF8, its date style ISO, its time
# zone UTC, its floats shortest exact, it has one schema, no optimiser to tune, no notices,
# no transaction that waits to read; transaction_read_only and transaction_isolation at
# startup come before any transaction, as in PostgreSQL (the first's value is only checked)
ACCEPTED = frozenset(
    {
        "application_name",
        "client_encoding",
        "client_min_messages",
        "datestyle",
        "default_transaction_deferrable",
        "extra_float_digits",
        "geqo",
        "intervalstyle",
        "search_path",
        "timezone",
        "transaction_deferrable",
        "transaction_isolation",
        "transaction_read_only",
    }
)
BOOLEANS = ("default_transaction_deferrable", "transaction_deferrable", "transaction_read_only")
# PostgreSQL's names for what CascaDB always does: a COMMIT answered once the store has the
# transaction (synchronous_commit on), a backslash in a string literal no escape
FIXED = {"standard_conforming_strings": "on", "synchronous_commit": "on"}
# what a session reports at startup (ParameterStatus) and SHOWs, as PostgreSQL spells them
REPORTED = {
    "server_version": SERVER_VERSION,
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",  # CascaDB's own, whatever the client asked
    "DateStyle": "ISO, MDY",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
}
# PostgreSQL's names a client may only read (its "cannot be changed", 55P02)
READ_ONLY = frozenset({"server_version", "server_encoding", "integer_datetimes"})
_SHOWN = {name.lower(): (name, value) for name, value in {**REPORTED, **FIXED}.items()}
_SCOPE = r"\s*SET\s+(?:(?:SESSION|LOCAL)\s+)?"
# PostgreSQL's SET forms of their own: those of a parameter, then those CascaDB does not have
_FORMS = {"TIME ZONE": "timezone", "NAMES": "client_encoding", "SCHEMA": "search_path"}
_FORM = re.compile(
    _SCOPE + r"(?P<form>TIME\s+ZONE|NAMES|SCHEMA|SESSION\s+AUTHORIZATION|ROLE|CONSTRAINTS"
    r"|XML\s+OPTION)\s+(?P<value>.*?)\s*;?\s*",
    re.I | re.S,
)
_NAME = r'(?P<name>"[^"]+"|[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)*)'
_SET = re.compile(_SCOPE + _NAME + r"\s*(?:=|\s+TO\s+)\s*(?P<value>.+?)\s*;?\s*", re.I | re.S)
_RESET = re.compile(
    r"\s*RESET\s+(?:(?P<form>TIME\s+ZONE|SESSION\s+AUTHORIZATION)|" + _NAME + r")\s*;?\s*", re.I
)
# the session's default transaction modes: parsing.transaction_set reads their SET and RESET
_MODES = frozenset({"default_transaction_isolation", "default_transaction_read_only"})


def shown(name: str) -> tuple[str, str] | None:
    """What SHOW `name` (any case) answers: its column's name and the value, else None."""
    return _SHOWN.get(name.lower())


def show_unknown(name: str) -> None:
    """SHOW `name` that `shown` does not answer: 0A000 for a name CascaDB takes but keeps no
    value of, else 42704, as PostgreSQL's for a name it does not know."""
    if name.lower() in ACCEPTED | {"all"}:
        raise errors.NotSupportedError(f"CascaDB does not support SHOW {name.lower()}")
    raise errors.UndefinedObject(f'unrecognized configuration parameter "{name.lower()}"')


def set_command(sql: str) -> None:
    """A SET or RESET (of no transaction mode: parsing.transaction_set reads those) checked as
    `check` checks a name and value; 42601 if it is neither, 0A000 for PostgreSQL's SET
    SESSION AUTHORIZATION, ROLE, CONSTRAINTS and XML OPTION."""
    found = _FORM.fullmatch(sql) or _RESET.fullmatch(sql)
    if found is not None and found.group("form"):
        form = " ".join(found.group("form").upper().split())
        if form not in _FORMS:
            verb = sql.split()[0].upper()
            raise errors.NotSupportedError(f"CascaDB does not support {verb} {form}")
        value = found.groupdict().get("value") or "DEFAULT"  # RESET TIME ZONE
        check(_FORMS[form], None if value.upper() in ("DEFAULT", "LOCAL") else _unquoted(value))
        return
    found = found or _SET.fullmatch(sql)
    if found is None:
        raise errors.ProgrammingError(f"syntax error: {sql.strip()!r}")
    name = found.group("name")
    name = name[1:-1] if name.startswith('"') else name
    value = found.groupdict().get("value")
    if value is not None and value.upper() != "DEFAULT":
        check(name, _unquoted(value))
    elif name.lower() != "all" or value is not None:  # RESET ALL
        check(name, None)


def _unquoted(value: str) -> str:
    if len(value) > 1 and value[0] == value[-1] == "'" and "'" not in value[1:-1]:
        return value[1:-1]
    return value


def check(name: str, value: str | None) -> None:
    """Whether a SET or startup packet may give parameter `name` `value` (None: its default,
    as RESET; a transaction mode's name is read elsewhere): 42704 for a name CascaDB does not
    know (but dotted ones: PostgreSQL's custom names), 55P02 for a read-only one, 0A000 for a
    value of a FIXED name other than its own, 22023 for a Boolean one's value that is no
    Boolean."""
    key = name.lower()
    if value is None:
        if key in READ_ONLY or (key not in ACCEPTED | _MODES and key not in FIXED):
            check(name, "")  # its refusal, if any
        return
    if key in BOOLEANS:
        boolean(key, value)
    elif key in FIXED:
        if _normal(key, value) != FIXED[key]:
            raise errors.NotSupportedError(
                f"CascaDB supports only {key} = {FIXED[key]} (it was asked {value})"
            )
    elif key in READ_ONLY:
        raise errors.CantChangeRuntimeParam(f'parameter "{key}" cannot be changed')
    elif key not in ACCEPTED and "." not in key:
        raise errors.UndefinedObject(f'unrecognized configuration parameter "{name}"')


def _normal(name: str, value: str) -> str:
    """`value` as PostgreSQL reads it for `name` (its Boolean words as on and off)."""
    word = value.strip().lower()
    try:
        return "on" if boolean(name, word) else "off"
    except errors.InvalidParameterValue:
        return word


_ISOLATION_NAMES = ("TRANSACTION_ISOLATION", "TRANSACTION ISOLATION LEVEL")


def show(session: Session, name: str) -> Result:
    """SHOW transaction_isolation (or TRANSACTION ISOLATION LEVEL), transaction_read_only: the
    open transaction's mode, else the next one's; SHOW default_transaction_isolation,
    default_transaction_read_only: the session's default; others as this module has them."""
    from meterseal.cascadb.executor import Result  # (executor imports what imports this)

    if name in _ISOLATION_NAMES:
        value, column = session.isolation.lower(), "transaction_isolation"
    elif name == "DEFAULT_TRANSACTION_ISOLATION":
        value, column = session.default_isolation.lower(), "default_transaction_isolation"
    elif name in ("TRANSACTION_READ_ONLY", "DEFAULT_TRANSACTION_READ_ONLY"):
        column = name.lower()
        default = column.startswith("default")
        read_only = session.defaults.now.read_only if default else session.read_only_transaction
        value = "on" if read_only else "off"
    else:
        known = shown(name)
        if known is None:
            show_unknown(name)
        column, value = known or (name, "")
    return Result([column], [(value,)], command="SHOW")
