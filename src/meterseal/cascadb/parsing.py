"""SQL text into parsed statements, and what a statement asks of its transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType  # type: ignore[attr-defined]

from meterseal.cascadb.casts import mark_postgres
from meterseal.cascadb.errors import (
    InvalidParameterValue,
    NoActiveSqlTransaction,
    ProgrammingError,
)
from meterseal.cascadb.labels import fold, fold_column_names, remember_names
from meterseal.cascadb.pg_strings import MAY_HOLD, read_escape_strings
from meterseal.cascadb.positions import mark_positions

DIALECT = "sqlite"
_SAVEPOINT = re.compile(r"\s*(SAVEPOINT|RELEASE)\s+(?:SAVEPOINT\s+)?(\"?\w+\"?)\s*;?\s*", re.I)
# PostgreSQL's transaction modes, separated by commas or spaces (sqlglot reads neither START
# TRANSACTION nor a mode list without commas, nor READ ONLY)
_MODE = (
    r"ISOLATION\s+LEVEL\s+(?:READ\s+UNCOMMITTED|READ\s+COMMITTED|REPEATABLE\s+READ|SERIALIZABLE)"
    r"|READ\s+ONLY|READ\s+WRITE|(?:NOT\s+)?DEFERRABLE"
)
_MODES = rf"(?:{_MODE})(?:\s*,\s*(?:{_MODE})|\s+(?:{_MODE}))*"
_START = re.compile(
    rf"(?P<verb>BEGIN(?:\s+(?:WORK|TRANSACTION))?|START\s+TRANSACTION)(?:\s+(?P<modes>{_MODES}))?\s*",
    re.I,
)
# Statements read here rather than by sqlglot's parser: BEGIN and START TRANSACTION (modes),
# and the session commands the PostgreSQL protocol answers itself (SESSION_VERBS)
_MAY_SPLIT = re.compile(r"\b(?:BEGIN|START|SET|RESET|DEALLOCATE|DISCARD|SHOW)\b", re.I)
SESSION_VERBS = ("SET", "RESET", "DEALLOCATE", "DISCARD", "SHOW")
_SET_MODES = re.compile(
    r"\s*SET\s+(?:SESSION\s+|(?P<local>LOCAL\s+))?(?P<scope>SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION"
    rf"|TRANSACTION)\s+(?P<modes>{_MODES})\s*;?\s*",
    re.I,
)
_SET_MODES_ASKED = re.compile(
    r"\s*SET\s+(?:SESSION\s+|LOCAL\s+)?(?:SESSION\s+CHARACTERISTICS\s+AS\s+)?TRANSACTION\b", re.I
)
_SET_MODE = re.compile(
    r"\s*SET\s+(?:SESSION\s+|(?P<local>LOCAL\s+))?"
    r"(?P<scope>(?:default_)?transaction_(?:isolation|read_only))"
    r"\s*(?:=|\s+TO\s+)\s*(?P<quote>'?)(?P<value>[^';]+?)(?P=quote)\s*;?\s*",
    re.I,
)
# RESET name (a word, quoted or not, or PostgreSQL's two-word names) and RESET ALL
_RESET = re.compile(r'\s*RESET\s+(?P<name>"[^"]+"|\w+(?:\s+\w+)?)\s*;?\s*', re.I)
_RESETS = {
    "all": ("isolation", "read_only"),
    "default_transaction_isolation": ("isolation",),
    "default_transaction_read_only": ("read_only",),
}
# DEALLOCATE [PREPARE] name | ALL ("PREPARE" alone is a name, as in PostgreSQL)
_DEALLOCATE = re.compile(
    r'\s*DEALLOCATE\s+(?:PREPARE\s+(?=\S))?(?P<name>"(?:[^"]|"")*"|[^\s";]+)\s*;?\s*', re.I
)
# PostgreSQL's Boolean words (a prefix will do, but of "on" and "off", two letters at least)
_BOOLEANS = [("true", True, 1), ("false", False, 1), ("yes", True, 1), ("no", False, 1)]
_BOOLEANS += [("on", True, 2), ("off", False, 2), ("1", True, 1), ("0", False, 1)]
SERIAL_LEVELS = ("SERIALIZABLE", "REPEATABLE READ")  # both hold the write lock: serial
READ_COMMITTED, SERIALIZABLE = "READ COMMITTED", "SERIALIZABLE"
_SESSION = "meterseal_session"  # key of a session command's text in its node's meta
LEVELS = (*SERIAL_LEVELS, READ_COMMITTED, "READ UNCOMMITTED")  # PostgreSQL's, as it lists them
TAG = "meterseal_tag"  # key of a statement's command tag in a node's meta (START TRANSACTION)
_READS_ONLY = "meterseal_reads_only"  # key of `reads_only`'s answer in a node's meta
QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)


def is_query(node: exp.Expression) -> bool:
    """Whether a parsed statement only reads (a SELECT or a set operation of them)."""
    return isinstance(node, QUERIES)


def session_command(node: exp.Expression) -> str | None:
    """A session command's text (SET, DEALLOCATE, DISCARD, SHOW: what the PostgreSQL
    protocol answers without the engine), else None."""
    text = node.meta.get(_SESSION)
    return text if isinstance(text, str) else None


def command_name(node: exp.Expression) -> str:
    """A statement's command as PostgreSQL names it in an error (SELECT FOR UPDATE...)."""
    if isinstance(node, QUERIES):
        lock = node.find(exp.Lock)
        shared = lock is not None and not lock.args.get("update")
        return "SELECT FOR SHARE" if shared else "SELECT FOR UPDATE"
    kind = node.args.get("kind") if isinstance(node, exp.Create | exp.Drop) else None
    return f"{node.key.upper()} {str(kind or '').upper()}".strip()


def reads_only(node: exp.Expression) -> bool:
    """Whether a statement may run as a reader: a query without FOR UPDATE or FOR SHARE (which
    ask that what they read stay as read until the transaction ends: the write lock)."""
    known = node.meta.get(_READS_ONLY)
    if known is None:
        # Walking the whole tree for a lock clause cost as much as running a point select;
        # parsed statements are cached by text, so the answer is kept on the node.
        known = is_query(node) and node.find(exp.Lock) is None
        node.meta[_READS_ONLY] = known
    return bool(known)


@dataclass(frozen=True)
class Modes:
    """What a BEGIN or SET TRANSACTION asks: an isolation level ("REPEATABLE READ"...) and
    whether the transaction only reads; None where it asks nothing."""

    level: str | None = None
    read_only: bool | None = None
    # the session's default modes (SessionModes' fields) it puts back to what they were at the
    # session's start (RESET, SET ... TO DEFAULT: the startup packet's value, else the server's)
    reset: tuple[str, ...] = ()


def _mode_list(text: str) -> list[str]:
    return [" ".join(m.upper().split()) for m in re.findall(_MODE, text, re.I)]


def _modes(text: str) -> Modes:
    level, read_only = None, None
    for mode in _mode_list(text):
        if mode.startswith("ISOLATION LEVEL "):
            level = mode.removeprefix("ISOLATION LEVEL ")
        elif mode in ("READ ONLY", "READ WRITE"):
            read_only = mode == "READ ONLY"
    return Modes(level, read_only)


def transaction_modes(node: exp.Expression) -> Modes:
    """What a BEGIN asks: PostgreSQL's modes; SQLite's BEGIN IMMEDIATE or EXCLUSIVE take the
    write lock at once, as SERIALIZABLE does."""
    if str(node.args.get("this") or "").upper() in ("IMMEDIATE", "EXCLUSIVE"):
        return Modes(SERIALIZABLE)
    return _modes(", ".join(str(m) for m in node.args.get("modes") or []))


def transaction_set(sql: str) -> tuple[bool, Modes, bool] | None:
    """For PostgreSQL's SET of transaction modes (SET TRANSACTION ..., SET SESSION
    CHARACTERISTICS AS TRANSACTION ..., SET [default_]transaction_isolation or
    [default_]transaction_read_only) and RESET: whether it holds for the session (else the open
    transaction), what it asks, and whether it is SET LOCAL."""
    found = _SET_MODES.fullmatch(sql)
    if found is not None:
        session_wide = found.group("scope").upper() != "TRANSACTION"
        return session_wide, _modes(found.group("modes")), bool(found.group("local"))
    if _SET_MODES_ASKED.match(sql):  # modes none of which reads as one (SERIALIZABL)
        raise ProgrammingError(f"syntax error: transaction modes {sql.strip()!r}")
    found = _RESET.fullmatch(sql)
    if found is not None:
        name = found.group("name")  # folded to lower case unless quoted, as PostgreSQL's
        name = name[1:-1] if name.startswith('"') else name.lower()
        return True, Modes(reset=_RESETS.get(name, ())), False  # others: no effect, as SET's
    found = _SET_MODE.fullmatch(sql)
    if found is None:
        return None
    scope, value = found.group("scope").lower(), found.group("value")
    session_wide = scope.startswith("default")
    level = " ".join(value.upper().split())
    local = bool(found.group("local"))
    default = level == "DEFAULT" and not found.group("quote")  # RESET, or no change
    if default:  # the session's default at its start, or (a transaction's) no change
        reset = _RESETS[scope] if session_wide else ()
        return session_wide, Modes(reset=reset), local
    if scope.endswith("read_only"):
        return session_wide, Modes(read_only=boolean(scope, value)), local
    return session_wide, Modes(isolation_level(scope, value)), local


def isolation_level(name: str, value: str) -> str:
    """`value` of the parameter `name` read as one of PostgreSQL's isolation levels
    ("REPEATABLE READ"...); 22023 if it is none, as PostgreSQL's."""
    level = " ".join(value.upper().split())
    if level not in LEVELS:  # as PostgreSQL's: a misspelt level is no level at all
        known = ", ".join(known.lower() for known in LEVELS)
        raise InvalidParameterValue(
            f'invalid value for parameter "{name.lower()}": "{value}" (one of {known})'
        )
    return level


def boolean(name: str, value: str) -> bool:
    """`value` of the parameter `name` read as PostgreSQL's Boolean words; 22023 if none."""
    word = value.strip().lower()
    for text, meaning, shortest in _BOOLEANS:
        if len(word) >= shortest and text.startswith(word):
            return meaning
    raise InvalidParameterValue(f'parameter "{name}" requires a Boolean value')


def number_placeholders(sql: str, dialect: str = DIALECT) -> str:
    """`?` placeholders rewritten as `$1`, `$2`, ... in the order they appear."""
    if "?" not in sql or dialect != DIALECT:
        return sql
    tokens = [
        t
        for t in sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
        if t.token_type == TokenType.PLACEHOLDER and t.text == "?"
    ]
    for number, token in reversed(list(enumerate(tokens, start=1))):
        sql = sql[: token.start] + f"${number}" + sql[token.end + 1 :]
    return sql


def parse(sql: str, dialect: str = DIALECT) -> list[exp.Expression]:
    """The statements of `sql` in `dialect` (sqlglot's); ProgrammingError on bad syntax."""
    marked = _SAVEPOINT.fullmatch(sql)
    if marked is not None:  # sqlglot would parse it as a Command too, warning each time
        verb, name = marked.group(1).upper(), marked.group(2)
        return [exp.Command(this=verb, expression=exp.Literal.string(name))]
    statements: Sequence[object]
    try:
        if dialect == "postgres" and (_MAY_SPLIT.search(sql) or MAY_HOLD.search(sql)):
            statements = _postgres(sql)
        else:
            statements = sqlglot.parse(number_placeholders(sql, dialect), read=dialect)
    except (ParseError, TokenError) as exc:
        raise ProgrammingError(f"syntax error: {exc}") from exc
    parsed = [s for s in statements if isinstance(s, exp.Expression)]
    if dialect == "postgres":  # its output columns are named by the functions as written
        for statement in parsed:
            remember_names(statement, sql)
            fold_column_names(statement)
            mark_postgres(statement)  # its casts convert as PostgreSQL's
            # its GROUP BY and ORDER BY positions read as PostgreSQL's (`+1` no position)
            mark_positions(statement, sql)
    return parsed


def _postgres(sql: str) -> list[object]:
    """PostgreSQL's statements one by one: its BEGIN and START TRANSACTION read here, its
    session commands kept as their text (`session_command`), others by sqlglot's parser;
    its escape strings (`E'…'`) read as PostgreSQL's."""
    dialect = sqlglot.Dialect.get_or_raise("postgres")
    statements: list[object] = []  # as sqlglot.parse's: None for an empty statement
    chunk: list[Token] = []
    for token in [*read_escape_strings(sql, dialect.tokenize(sql)), None]:
        if token is not None and token.token_type != TokenType.SEMICOLON:
            chunk.append(token)
            continue
        if chunk:
            end = len(sql) if token is None else token.start
            statements += _statement(dialect, sql, chunk, end)
        chunk = []
    return statements


def _statement(dialect: sqlglot.Dialect, sql: str, chunk: list[Token], end: int) -> list[object]:
    verb = chunk[0].text.upper()
    if verb in SESSION_VERBS and chunk[0].token_type != TokenType.IDENTIFIER:
        # up to its semicolon: the tokenizer reads SHOW's rest as one string of its own
        node = exp.Command(this=verb, expression=exp.Literal.string(verb))
        text = sql[chunk[0].start : end].strip()
        if verb != "SHOW":  # without the comments between its tokens, as PostgreSQL reads it
            text = _uncommented(text)
        node.meta[_SESSION] = text
        return [node]
    started = _START.fullmatch(sql, chunk[0].start, chunk[-1].end + 1)
    if started is None:
        return list(dialect.parser().parse(chunk, sql))
    begin = exp.Transaction(this=None, modes=_mode_list(started[0]))
    if started.group("verb").upper().startswith("START"):
        begin.meta[TAG] = "START TRANSACTION"
    return [begin]


def deallocated(sql: str) -> str | None:
    """The name of the prepared statement a DEALLOCATE [PREPARE] drops, as PostgreSQL reads
    an identifier (quoted: as written, `""` a quote; else A to Z in lower case); None for ALL."""
    found = _DEALLOCATE.fullmatch(sql)
    if found is None or found.group("name") == '""':  # (a zero-length quoted name too)
        raise ProgrammingError(f"syntax error: {sql.strip()!r}")
    name = found.group("name")
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return None if name.upper() == "ALL" else fold(name)


def controls_transaction(node: exp.Expression) -> bool:
    """Whether a statement begins or ends a transaction block (BEGIN, COMMIT, ROLLBACK,
    SAVEPOINT, RELEASE)."""
    if isinstance(node, exp.Transaction | exp.Commit | exp.Rollback):
        return True
    return isinstance(node, exp.Command) and str(node.this).upper() in ("SAVEPOINT", "RELEASE")


def outside_block_refused(statement: exp.Expression, block: bool) -> None:
    """SAVEPOINT, RELEASE and ROLLBACK TO outside a transaction block (`block`, an explicit
    one) fail with 25P01, as PostgreSQL's (the engine's SQLite rule opens a transaction)."""
    if block:
        return
    if isinstance(statement, exp.Rollback) and statement.args.get("savepoint") is not None:
        verb = "ROLLBACK TO SAVEPOINT"
    elif isinstance(statement, exp.Command) and str(statement.this).upper() == "SAVEPOINT":
        verb = "SAVEPOINT"
    elif isinstance(statement, exp.Command) and str(statement.this).upper() == "RELEASE":
        verb = "RELEASE SAVEPOINT"
    else:
        return
    raise NoActiveSqlTransaction(f"{verb} can only be used in transaction blocks")


_COMMENT_OR_QUOTED = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", re.S)


def _uncommented(text: str) -> str:
    """`text` with each comment outside quotes a space (text with `$`, which may quote
    anything, as it is)."""
    if "$" in text or ("--" not in text and "/*" not in text):
        return text
    kept = _COMMENT_OR_QUOTED.sub(lambda m: m[0] if m[0][0] in "'\"" else " ", text)
    return kept.strip()
