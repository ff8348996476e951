"""The run-time parameters of a startup packet (libpq's `options`, other keys) and RESET
answer as PostgreSQL's: the same outcome from CascaDB and, marked `services`, the real
PostgreSQL."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from meterseal.storage.engine import make_engine
from tests.cascadb.pg_client import message
from tests.cascadb.test_pg_compat import IDLE, INERROR, INTRANS, TABLE, Step, transcript

READ_ONLY = "-c default_transaction_read_only=on"


def with_options(dsn: str, options: str) -> str:
    """`dsn` with `options` added to its own (the real PostgreSQL's scratch search_path)."""
    ours = conninfo_to_dict(dsn).get("options", "")
    return make_conninfo(dsn, options=f"{ours} {options}".strip())


def test_options_make_the_session_read_only(dsn: str) -> None:
    # CascaDB ignored `options`: a client asking for read-only sessions could write.
    assert transcript(dsn, [TABLE]) == [("CREATE TABLE", IDLE)]
    steps: list[Step] = [
        "SHOW default_transaction_read_only",
        "INSERT INTO t VALUES (1, 'one')",
        ("INSERT INTO t VALUES (%s, %s)", (1, "one")),  # the extended protocol too
        "CREATE TABLE u(k INTEGER PRIMARY KEY)",
        "BEGIN",
        "DELETE FROM t",
        "ROLLBACK",
        "BEGIN READ WRITE",  # a block's own mode overrides the session's default
        "INSERT INTO t VALUES (1, 'one')",
        "COMMIT",
        "SET default_transaction_read_only = off",
        "INSERT INTO t VALUES (2, 'two')",
        "SELECT k FROM t ORDER BY k",
    ]
    assert transcript(with_options(dsn, READ_ONLY), steps) == [
        ("SHOW", IDLE, "on"),
        ("25006", IDLE),
        ("25006", IDLE),
        ("25006", IDLE),
        ("BEGIN", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("SET", IDLE),
        ("INSERT 0 1", IDLE),
        ("SELECT 2", IDLE, "1", "2"),
    ]


def test_reset_returns_to_the_sessions_default_from_its_options(dsn: str) -> None:
    # RESET failed with 0A000, and SET ... TO DEFAULT gave the server's default, not the one
    # the session started with.
    assert transcript(dsn, [TABLE]) == [("CREATE TABLE", IDLE)]
    options = f"{READ_ONLY} -c default_transaction_isolation=repeatable\\ read"
    steps: list[Step] = [
        "SET default_transaction_read_only = off",
        "SET default_transaction_isolation = 'read committed'",
        "RESET default_transaction_read_only",
        "SHOW default_transaction_read_only",
        "SHOW default_transaction_isolation",
        "INSERT INTO t VALUES (1, 'one')",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "RESET ALL",
        "SHOW default_transaction_isolation",
        "SET default_transaction_read_only = off",
        "SET default_transaction_read_only TO DEFAULT",
        "SHOW default_transaction_read_only",
        "SET default_transaction_read_only = off",
        "BEGIN",
        "RESET default_transaction_read_only",  # undone by the ROLLBACK, as a SET is
        "ROLLBACK",
        "SHOW default_transaction_read_only",
        "DISCARD ALL",  # RESET ALL among others
        "SHOW default_transaction_read_only",
        'RESET "default_transaction_read_only"',
        "RESET application_name",
        "RESET",
    ]
    assert transcript(with_options(dsn, options), steps) == [
        ("SET", IDLE),
        ("SET", IDLE),
        ("RESET", IDLE),
        ("SHOW", IDLE, "on"),
        ("SHOW", IDLE, "read committed"),
        ("25006", IDLE),
        ("SET", IDLE),
        ("RESET", IDLE),
        ("SHOW", IDLE, "repeatable read"),
        ("SET", IDLE),
        ("SET", IDLE),
        ("SHOW", IDLE, "on"),
        ("SET", IDLE),
        ("BEGIN", INTRANS),
        ("RESET", INTRANS),
        ("ROLLBACK", IDLE),
        ("SHOW", IDLE, "off"),
        ("DISCARD ALL", IDLE),
        ("SHOW", IDLE, "on"),
        ("RESET", IDLE),
        ("RESET", IDLE),
        ("42601", IDLE),
    ]


def test_the_read_only_default_is_reported_as_postgresql_reports_it(dsn: str) -> None:
    # CascaDB sent no ParameterStatus of it: libpq's target_session_attrs could not tell.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(with_options(dsn, READ_ONLY), target_session_attrs="read-write")
    with psycopg.connect(dsn, autocommit=True, target_session_attrs="read-write") as conn:
        assert conn.info.parameter_status("default_transaction_read_only") == "off"
        conn.execute("SET default_transaction_read_only = on")
        assert conn.info.parameter_status("default_transaction_read_only") == "on"
        conn.execute("RESET ALL")
        assert conn.info.parameter_status("default_transaction_read_only") == "off"


def _outcome(dsn: str, packet: dict[str, str]) -> tuple[str, ...]:
    """A raw client's session started with `packet`'s keys besides user and database: the
    severity and SQLSTATE that refused it, else the parameters it reported and its SHOWs."""
    params = conninfo_to_dict(dsn)
    keys = {"user": str(params["user"]), "database": str(params["dbname"]), **packet}
    if "options" in params:  # the real PostgreSQL's scratch search_path
        keys["options"] = f"{params['options']} {keys.get('options', '')}"
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in keys.items())
    port = int(str(params["port"]))
    with socket.create_connection((str(params["host"]), port), timeout=10) as sock:
        sock.sendall(struct.pack("!II", 9 + len(body), 196608) + body + b"\x00")
        reported: dict[str, str] = {}
        rows: list[str] = []
        for kind, payload in _messages(sock):
            if kind == b"E":
                fields = {f[:1]: f[1:].decode() for f in payload.split(b"\x00") if f}
                return (fields[b"S"], fields[b"C"])
            if kind == b"S":
                name, value, _ = payload.split(b"\x00")
                reported[name.decode()] = value.decode()
            if kind == b"D":
                rows.append(payload[6:].decode())  # one column
            if kind == b"Z":
                if rows:
                    break
                query = b"SHOW default_transaction_read_only; SHOW default_transaction_isolation"
                sock.sendall(message(b"Q", query + b"\x00"))
    names = ("application_name", "default_transaction_read_only")
    return (*[reported.get(name, "?") for name in names], *rows)


def _messages(sock: socket.socket) -> Iterator[tuple[bytes, bytes]]:
    received = b""
    while True:
        while len(received) < 5 or len(received) < 1 + struct.unpack("!I", received[1:5])[0]:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        length = struct.unpack("!I", received[1:5])[0]
        yield received[:1], received[5 : 1 + length]
        received = received[1 + length :]


OUTCOMES = [
    ({"options": READ_ONLY}, ("", "on", "on", "read committed")),
    ({"options": "--default-transaction-read-only=yes"}, ("", "on", "on", "read committed")),
    (
        {"options": "-cdefault_transaction_isolation=repeatable\\ read"},
        ("", "off", "off", "repeatable read"),
    ),
    ({"default_transaction_read_only": "on"}, ("", "on", "on", "read committed")),
    (
        {"options": READ_ONLY, "default_transaction_read_only": "off"},
        ("", "off", "off", "read committed"),
    ),
    (
        {"options": "-c default_transaction_read_only=on -c default_transaction_read_only=off"},
        ("", "off", "off", "read committed"),
    ),
    (
        {"application_name": "mdc", "DateStyle": "ISO", "client_encoding": "UTF8"},
        ("mdc", "off", "off", "read committed"),
    ),
    (
        {"options": "-c extra_float_digits=3 -c meterseal.tenant=7"},
        ("", "off", "off", "read committed"),
    ),
    ({"options": "-c default_transaction_read_only=maybe"}, ("FATAL", "22023")),
    ({"default_transaction_isolation": "seralizable"}, ("FATAL", "22023")),
    ({"options": "-c default_transaction_read_onyl=on"}, ("FATAL", "42704")),
    ({"default_transaction_read_onyl": "on"}, ("FATAL", "42704")),
    ({"options": "-c default_transaction_read_only"}, ("FATAL", "42601")),
    ({"options": "default_transaction_read_only=on"}, ("FATAL", "42601")),
    ({"options": "-c transaction_isolation=serializable"}, ("FATAL", "25001")),
    ({"options": "-c server_version=9.6"}, ("FATAL", "55P02")),
    (
        {"synchronous_commit": "on", "standard_conforming_strings": "on"},
        ("", "off", "off", "read committed"),
    ),
]


@pytest.mark.parametrize(("packet", "expected"), OUTCOMES)
def test_startup_parameters_are_read_as_postgresql_reads_them(
    dsn: str, packet: dict[str, str], expected: tuple[str, ...]
) -> None:
    # CascaDB took every key but user, none applied, none refused.
    assert _outcome(dsn, packet) == expected


def test_make_engines_read_only_connections_cannot_write(dsn: str) -> None:
    # make_engine(read_only=True) asks PostgreSQL for read-only sessions through `options`,
    # which CascaDB ignored: the connections its pool makes wrote.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
    params = conninfo_to_dict(dsn)
    query = {k: str(v) for k, v in params.items() if k in ("options", "sslmode")}
    url = sa.URL.create(
        "postgresql+psycopg",
        username=str(params["user"]),
        host=str(params["host"]),
        port=int(str(params["port"])),
        database=str(params["dbname"]),
        query=query,
    )
    engine = make_engine(url, read_only=True)
    # connected as its pool connects (SQLAlchemy's first-connect queries of PostgreSQL's
    # catalog are beyond CascaDB)
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    raw = engine.dialect.connect(*cargs, **cparams)
    assert isinstance(raw, psycopg.Connection)
    with raw as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO t VALUES (1)")
        conn.rollback()
        assert conn.execute("SELECT k FROM t").fetchall() == []
