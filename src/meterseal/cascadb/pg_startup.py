"""The run-time parameters a PostgreSQL client sends in its startup packet, read as PostgreSQL
reads them: its `options` (`-c name=value`, `-cname=value`, `--name=value`, a backslash keeping
the next character, a space too), then its other keys (`default_transaction_read_only`,
`application_name`...), a later setting of a name winning.

CascaDB applies default_transaction_read_only and default_transaction_isolation (the session's
defaults, which RESET brings back); any other name is read as a SET reads it (pg_settings.py:
taken without effect if it changes nothing CascaDB does, as its ParameterStatus tells its own
values, or names with a dot; refused with 42704 if CascaDB does not know it, as PostgreSQL
refuses one it does not know, so that no setting a client asks for is silently dropped: a
read-only connection that would write).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from meterseal.cascadb import errors, pg_settings
from meterseal.cascadb.parsing import READ_COMMITTED, boolean, isolation_level
from meterseal.cascadb.session_defaults import SessionModes

# the startup packet's keys that are no parameter (_pq_.*: protocol options, too)
_PROTOCOL = frozenset({"user", "database", "options", "replication"})


@dataclass(frozen=True)
class Startup:
    """What a startup packet asks of its session: its default modes and application name."""

    modes: SessionModes
    application_name: str = ""


def split_options(text: str) -> list[str]:
    """`options` split at white space, a backslash keeping the next character as it is
    (PostgreSQL's pg_split_opts)."""
    words: list[str] = []
    word: list[str] | None = None
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
            word = [] if word is None else word
            continue
        elif char.isspace():
            if word is not None:
                words.append("".join(word))
            word = None
            continue
        word = [] if word is None else word
        word.append(char)
    if word is not None:
        words.append("".join(word))
    return words


def _switches(text: str) -> list[tuple[str, str]]:
    """The settings of `options`: `-c name=value` (or `-cname=value`) and `--name=value`, a
    name's '-' read as '_'; any other word is refused with 42601, as PostgreSQL's."""
    words, settings, at = split_options(text), [], 0
    while at < len(words):
        word = words[at]
        at += 1
        if word.startswith("--") and len(word) > 2:
            flag, setting = "--", word[2:]
        elif word.startswith("-c") and (len(word) > 2 or at < len(words)):
            flag, setting = "-c ", word[2:]
            if not setting:
                setting, at = words[at], at + 1
        else:
            raise errors.ProgrammingError(
                f"invalid command-line argument for server process: {word}"
            )
        name, equals, value = setting.partition("=")
        if not equals:
            raise errors.ProgrammingError(f"{flag}{setting} requires a value")
        settings.append((name.replace("-", "_"), value))
    return settings


def read_startup(packet: dict[str, str], modes: SessionModes) -> Startup:
    """What `packet` (the startup packet's keys and values) asks of a session whose defaults
    are otherwise `modes`; 42601, 42704, 22023 (a value that is none of its parameter's) or
    25001 (an isolation level for a transaction) for what PostgreSQL refuses too."""
    settings = _switches(packet.get("options", ""))
    settings += [
        (name, value)
        for name, value in packet.items()
        if name not in _PROTOCOL and not name.startswith("_pq_.")
    ]
    startup = Startup(modes)
    for name, value in settings:
        key = name.lower()
        if key == "default_transaction_read_only":
            startup = replace(startup, modes=replace(startup.modes, read_only=boolean(key, value)))
        elif key == "default_transaction_isolation":
            level = isolation_level(key, value)
            startup = replace(startup, modes=replace(startup.modes, isolation=level))
        elif key == "transaction_isolation":
            if isolation_level(key, value) != READ_COMMITTED:  # as PostgreSQL's, oddly
                raise errors.ActiveSqlTransaction(
                    "SET TRANSACTION ISOLATION LEVEL must be called before any query"
                )
        elif key == "application_name":
            startup = replace(startup, application_name=value)
        else:
            pg_settings.check(name, value)
    return startup
