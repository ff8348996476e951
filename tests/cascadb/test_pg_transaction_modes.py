"""START TRANSACTION, BEGIN's modes and SET TRANSACTION answer as PostgreSQL's (the same
transcript from CascaDB and, marked `services`, the real PostgreSQL), and what they ask of
CascaDB's write lock."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.cascadb.pg_client import Running, two_sessions
from tests.cascadb.test_pg_compat import IDLE, INERROR, INTRANS, TABLE, Step, transcript


def test_start_transaction_is_begin_with_its_modes(dsn: str) -> None:
    steps: list[Step] = [
        TABLE,
        "START TRANSACTION",
        "INSERT INTO t VALUES (1, 'one')",
        "COMMIT",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY",  # modes without commas
        "SELECT k FROM t",
        "INSERT INTO t VALUES (2, 'two')",
        "ROLLBACK",
        "BEGIN READ ONLY",
        "SELECT k FROM t FOR UPDATE",
        "ROLLBACK",
        "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE",
        "INSERT INTO t VALUES (2, 'two')",
        "COMMIT",
        "BEGIN WORK ISOLATION LEVEL READ COMMITTED NOT DEFERRABLE",
        "ROLLBACK",
        "START TRANSACTION, READ ONLY",  # no comma before the first mode
        "SELECT k FROM t ORDER BY k",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("START TRANSACTION", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("START TRANSACTION", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("START TRANSACTION", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("BEGIN", INTRANS),
        ("ROLLBACK", IDLE),
        ("42601", IDLE),
        ("SELECT 2", IDLE, "1", "2"),
    ]


def test_set_transaction_after_the_first_query_is_25001(dsn: str) -> None:
    steps: list[Step] = [
        TABLE,
        "BEGIN",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",  # before any query: taken
        "SELECT 1",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",  # the level it has: no change
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "ROLLBACK",
        "START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SELECT 1",
        "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",  # a level of its own
        "ROLLBACK",
        "BEGIN",
        "SAVEPOINT sp",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",  # in a subtransaction
        "ROLLBACK",
        "BEGIN",
        "SELECT 1",
        "SET TRANSACTION READ ONLY",  # read only: at any time
        "INSERT INTO t VALUES (1, 'one')",
        "ROLLBACK",
        "BEGIN READ ONLY",
        "SELECT 1",
        "SET TRANSACTION READ WRITE",  # read write: before any query only
        "ROLLBACK",
        "SELECT k FROM t",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("SET", INTRANS),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("START TRANSACTION", INTRANS),
        ("SET", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("SET", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("SELECT 0", IDLE),
    ]


def test_begin_inside_a_block_sets_its_modes_as_set_transaction_does(dsn: str) -> None:
    # PostgreSQL warns that a transaction is in progress, then sets BEGIN's modes by SET
    # TRANSACTION's rules; they were ignored (a write after BEGIN READ ONLY went through).
    steps: list[Step] = [
        TABLE,
        "BEGIN",
        "SELECT 1",
        "BEGIN READ ONLY",
        "INSERT INTO t VALUES (1, 'one')",
        "ROLLBACK",
        "BEGIN",
        "SELECT 1",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",  # a level after the first query
        "ROLLBACK",
        "BEGIN READ ONLY",
        "SAVEPOINT sp",
        "SET TRANSACTION READ WRITE",  # before any query, but in a subtransaction
        "ROLLBACK",
        "BEGIN READ ONLY",
        "SAVEPOINT sp",
        "BEGIN READ WRITE",
        "ROLLBACK",
        "BEGIN",
        "SELEC 1",
        "START TRANSACTION READ ONLY",  # in an aborted block: refused as any statement
        "ROLLBACK",
        "SELECT k FROM t",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("BEGIN", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("BEGIN", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("42601", INERROR),
        ("25P02", INERROR),
        ("ROLLBACK", IDLE),
        ("SELECT 0", IDLE),
    ]


def test_read_only_set_in_a_savepoint_lasts_until_it_ends(dsn: str) -> None:
    # As PostgreSQL's: READ ONLY set inside a savepoint ends with it, by ROLLBACK TO or by
    # RELEASE (the enclosing transaction's mode comes back); it stayed for the whole block.
    steps: list[Step] = [
        TABLE,
        "BEGIN",
        "SAVEPOINT s",
        "SET TRANSACTION READ ONLY",
        "ROLLBACK TO SAVEPOINT s",
        "INSERT INTO t VALUES (1, 'one')",
        "SAVEPOINT r",
        "BEGIN READ ONLY",  # inside a block: its modes are SET
        "INSERT INTO t VALUES (2, 'two')",
        "ROLLBACK TO r",
        "SET TRANSACTION READ ONLY",  # the block's own: it stays
        "SAVEPOINT q",
        "RELEASE q",
        "INSERT INTO t VALUES (3, 'three')",
        "ROLLBACK",
        "BEGIN",
        "SAVEPOINT s",
        "SET TRANSACTION READ ONLY",
        "RELEASE SAVEPOINT s",
        "INSERT INTO t VALUES (4, 'four')",
        "COMMIT",
        "SELECT k FROM t ORDER BY k",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("BEGIN", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("SET", INTRANS),
        ("ROLLBACK", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("BEGIN", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", INTRANS),
        ("SET", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("RELEASE", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("SET", INTRANS),
        ("RELEASE", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("SELECT 1", IDLE, "4"),
    ]


def test_set_local_of_the_default_level_lasts_until_the_transaction_ends(dsn: str) -> None:
    # SET LOCAL default_transaction_isolation stayed for the session's life (a read committed
    # one in a serializable session left every later transaction read committed), and outside
    # a block it took effect; PostgreSQL's lasts until the transaction ends, and outside one
    # does nothing (a warning).
    show = "SHOW default_transaction_isolation"
    steps: list[Step] = [
        "SET LOCAL default_transaction_isolation = 'serializable'",
        show,
        "BEGIN",
        "SET LOCAL default_transaction_isolation = 'serializable'",
        show,
        "COMMIT",
        show,
        "SET default_transaction_isolation = 'serializable'",
        "BEGIN",
        "SET LOCAL default_transaction_isolation = 'read committed'",
        "COMMIT",
        show,
        "BEGIN",
        "SET LOCAL default_transaction_isolation = 'read committed'",
        "SET default_transaction_isolation = 'repeatable read'",  # the session's: it stays
        "COMMIT",
        show,
        "BEGIN",
        "SAVEPOINT s",
        "SET LOCAL SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "RELEASE s",
        show,
        "COMMIT",
        show,
    ]
    assert transcript(dsn, steps) == [
        ("SET", IDLE),
        ("SHOW", IDLE, "read committed"),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("SHOW", INTRANS, "serializable"),
        ("COMMIT", IDLE),
        ("SHOW", IDLE, "read committed"),
        ("SET", IDLE),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("COMMIT", IDLE),
        ("SHOW", IDLE, "serializable"),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("SET", INTRANS),
        ("COMMIT", IDLE),
        ("SHOW", IDLE, "repeatable read"),
        ("BEGIN", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("SET", INTRANS),
        ("RELEASE", INTRANS),
        ("SHOW", INTRANS, "read committed"),
        ("COMMIT", IDLE),
        ("SHOW", IDLE, "repeatable read"),
    ]


def test_an_isolation_level_misspelt_is_refused_not_read_committed(dsn: str) -> None:
    # A level SET by name that is none of PostgreSQL's four was taken as read committed (a
    # block asked SERIALIZABLE gave its write lock back on a misspelt SET), and transaction
    # modes that did not read were accepted doing nothing: 22023 and 42601, as PostgreSQL's.
    steps: list[Step] = [
        TABLE,
        "SET default_transaction_isolation = 'seralizable'",
        "SET default_transaction_isolation = 'default'",  # quoted: a name, not DEFAULT
        "SET default_transaction_isolation TO DEFAULT",
        "SET SESSION default_transaction_isolation TO 'read-committed'",
        "SET default_transaction_isolation = 'Repeatable Read'",
        "BEGIN",
        "SET transaction_isolation = 'seralizable'",
        "ROLLBACK",
        "BEGIN",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABL",
        "ROLLBACK",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLYY",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "SELECT 1",
        "SET transaction_isolation TO DEFAULT",  # accepted (PostgreSQL 15 tells read committed)
        "COMMIT",
        "BEGIN",
        "SET LOCAL transaction_isolation TO 'serializable'",
        "COMMIT",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("22023", IDLE),
        ("22023", IDLE),
        ("SET", IDLE),
        ("22023", IDLE),
        ("SET", IDLE),
        ("BEGIN", INTRANS),
        ("22023", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("42601", INERROR),
        ("ROLLBACK", IDLE),
        ("42601", IDLE),
        ("BEGIN", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("SET", INTRANS),
        ("COMMIT", IDLE),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("COMMIT", IDLE),
    ]


def test_a_misspelt_level_gives_no_write_lock_back(running: Running) -> None:
    with two_sessions(running) as (block, other):
        block.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")  # the write lock at BEGIN
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            block.execute("SET transaction_isolation = 'read comitted'")
        with pytest.raises(psycopg.errors.lookup("57000")):  # still held, block aborted
            other.execute("INSERT INTO t VALUES (1)")
        block.execute("ROLLBACK")
        other.execute("INSERT INTO t VALUES (2)")


def test_start_transaction_takes_the_write_lock_as_begin_of_its_level_does(
    running: Running,
) -> None:
    busy = psycopg.errors.lookup("57000")
    with two_sessions(running) as (block, other):
        block.execute("START TRANSACTION")  # read committed: a reader until its first write
        block.execute("SELECT k FROM t")
        other.execute("INSERT INTO t VALUES (1)")
        block.execute("ROLLBACK")
        block.execute("START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ WRITE")  # at once
        with pytest.raises(busy):
            other.execute("INSERT INTO t VALUES (2)")
        # lowered before its first query: read committed, the lock given back
        block.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        other.execute("INSERT INTO t VALUES (3)")
        block.execute("ROLLBACK")
        block.execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(busy):
            other.execute("INSERT INTO t VALUES (4)")
        block.execute("COMMIT")
        assert other.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (3,)]


@pytest.mark.parametrize("level", ["serializable", "repeatable read"])
def test_an_implicit_extended_transaction_above_read_committed_loses_no_update(
    dsn: str, level: str
) -> None:
    # Executes up to a Sync, no BEGIN, in a session whose default level is above read
    # committed: the implicit transaction began with a SELECT as a lock-free reader, so a
    # write committed by another session between its SELECT and its UPDATE was overwritten.
    # PostgreSQL fails the UPDATE (40001); CascaDB holds the write lock from the SELECT, so
    # the other write waits until the Sync: either way, no serial order is broken.
    with (
        psycopg.connect(dsn, autocommit=True) as reader,
        psycopg.connect(dsn, autocommit=True) as other,
    ):
        other.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER)")
        other.execute("INSERT INTO t VALUES (1, 0)")
        reader.execute(f"SET default_transaction_isolation = '{level}'")
        done: list[str] = []
        failed = ""
        try:
            with reader.pipeline(), reader.cursor() as cursor:
                cursor.execute("SELECT v FROM t WHERE k = 1")
                row = cursor.fetchone()  # a Flush: no Sync yet
                assert row is not None
                seen = int(row[0])
                adding = threading.Thread(
                    target=lambda: done.append(
                        str(other.execute("UPDATE t SET v = v + 1 WHERE k = 1").statusmessage)
                    )
                )
                adding.start()
                adding.join(timeout=1)  # PostgreSQL's has run; CascaDB's waits for the lock
                cursor.execute("UPDATE t SET v = %s WHERE k = 1", (seen + 10,))
        except psycopg.Error as exc:
            failed = exc.sqlstate or "?"
        adding.join()
        assert done == ["UPDATE 1"]
        final = other.execute("SELECT v FROM t WHERE k = 1").fetchall()
        # both in a serial order (11), or the reader's refused (1); never 10, a lost update
        assert (failed, final) in [("", [(11,)]), ("40001", [(1,)])]


def test_a_read_only_default_makes_every_later_transaction_read_only(dsn: str) -> None:
    # SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY and default_transaction_read_only
    # were accepted and did nothing: every later write went through. As PostgreSQL's, each
    # later transaction is READ ONLY (25006) until a READ WRITE of its own or of the session.
    insert = "INSERT INTO t VALUES (%s, 'x')"
    steps: list[Step] = [
        TABLE,
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        insert % 1,
        ("INSERT INTO t VALUES (%s, %s)", (1, "one")),  # an implicit extended transaction too
        "CREATE TABLE u(k INTEGER PRIMARY KEY)",
        "SHOW transaction_read_only",
        "SELECT k FROM t",
        "BEGIN",
        insert % 1,
        "ROLLBACK",
        "BEGIN READ WRITE",  # its own mode wins
        "SHOW transaction_read_only",
        insert % 1,
        "COMMIT",
        "BEGIN",
        "SET TRANSACTION READ WRITE",  # before its first query: taken
        insert % 2,
        "COMMIT",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        insert % 3,
        "SET default_transaction_read_only = on",
        "SHOW default_transaction_read_only",
        insert % 4,
        f"SET default_transaction_read_only TO off; {insert % 4}",  # the next transaction's
        "BEGIN",
        "SET default_transaction_read_only = 'off'",  # the next one's, not this one's
        insert % 4,
        "ROLLBACK",  # the SET is undone with it
        "SHOW default_transaction_read_only",
        "BEGIN",
        "SET LOCAL default_transaction_read_only = false",
        "COMMIT",
        "SHOW default_transaction_read_only",
        "SET default_transaction_read_only TO DEFAULT",
        insert % 4,
        "SET default_transaction_read_only = 'maybe'",
        "BEGIN",
        "SELECT 1",
        "SET transaction_read_only = on",  # the open transaction's, as SET TRANSACTION's
        insert % 5,
        "ROLLBACK",
        "SELECT k FROM t ORDER BY k",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("SET", IDLE),
        ("25006", IDLE),
        ("25006", IDLE),
        ("25006", IDLE),
        ("SHOW", IDLE, "on"),
        ("SELECT 0", IDLE),
        ("BEGIN", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("BEGIN", INTRANS),
        ("SHOW", INTRANS, "off"),
        ("INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("SET", IDLE),
        ("INSERT 0 1", IDLE),
        ("SET", IDLE),
        ("SHOW", IDLE, "on"),
        ("25006", IDLE),
        ("25006", IDLE),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("SHOW", IDLE, "on"),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("COMMIT", IDLE),
        ("SHOW", IDLE, "on"),
        ("SET", IDLE),
        ("INSERT 0 1", IDLE),
        ("22023", IDLE),
        ("BEGIN", INTRANS),
        ("SELECT 1", INTRANS, "1"),
        ("SET", INTRANS),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("SELECT 4", IDLE, "1", "2", "3", "4"),
    ]


def test_rollback_to_a_savepoint_keeps_a_set_local_before_it_local(dsn: str) -> None:
    # ROLLBACK TO brought back the default modes but not that a SET LOCAL made one: after a
    # plain SET of it in the savepoint, rolled back, the SET LOCAL's value outlived COMMIT
    steps: list[Step] = [
        "BEGIN",
        "SET LOCAL default_transaction_read_only = on",
        "SET LOCAL default_transaction_isolation = 'serializable'",
        "SAVEPOINT s",
        "SET default_transaction_read_only = off",
        "SET default_transaction_isolation = 'repeatable read'",
        "ROLLBACK TO SAVEPOINT s",
        "SHOW default_transaction_read_only",
        "COMMIT",
        "SHOW default_transaction_read_only",
        "SHOW default_transaction_isolation",
    ]
    assert transcript(dsn, steps) == [
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("SET", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("SET", INTRANS),
        ("SET", INTRANS),
        ("ROLLBACK", INTRANS),
        ("SHOW", INTRANS, "on"),
        ("COMMIT", IDLE),
        ("SHOW", IDLE, "off"),
        ("SHOW", IDLE, "read committed"),
    ]


def test_a_set_in_a_pipeline_begins_the_transaction_up_to_its_sync(dsn: str) -> None:
    # Over the extended protocol a SET began no transaction: the INSERT after it, before the
    # Sync, began one with the modes the SET had just set (READ ONLY refused it, READ WRITE
    # let it write where PostgreSQL's refuses), and a SET in a batch that failed stayed set
    scripts = [
        ["SET default_transaction_read_only = on", "INSERT INTO t VALUES (1)"],
        ["SHOW default_transaction_read_only", "INSERT INTO t VALUES (2)"],
        ["SET default_transaction_read_only = off", "INSERT INTO t VALUES (3)"],
        ["SHOW default_transaction_read_only"],  # the failed batch's SET undone
        ["SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"],
        ["SET default_transaction_isolation = 'serializable'", "SHOW transaction_isolation"],
        ["SHOW transaction_isolation", "INSERT INTO t VALUES (4)"],
        ["SET default_transaction_isolation = 'read committed'", "SELECT k FROM t ORDER BY k"],
    ]
    assert _pipelined(dsn, scripts) == [
        ["SET", "INSERT 0 1"],
        ["25006"],
        ["25006"],
        ["SHOW on"],
        ["SET"],
        ["SET", "SHOW read committed"],
        ["SHOW serializable", "INSERT 0 1"],
        ["SET", "SELECT 2 1,4"],
    ]


def _pipelined(dsn: str, scripts: list[list[str]]) -> list[list[str]]:
    """Each script's outcome, its statements pipelined up to one Sync: each statement's tag
    and rows, or the SQLSTATE the script failed with."""
    outcomes: list[list[str]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        for script in scripts:
            try:
                with conn.pipeline():
                    cursors = [conn.execute(sql, ()) for sql in script]
                outcome = []
                for cursor in cursors:
                    rows = cursor.fetchall() if cursor.description else []
                    shown = ",".join(str(v) for row in rows for v in row)
                    outcome.append(f"{cursor.statusmessage} {shown}".strip())
                outcomes.append(outcome)
            except psycopg.Error as exc:
                outcomes.append([exc.sqlstate or "?"])
    return outcomes


def test_a_set_of_the_modes_may_hold_comments(dsn: str) -> None:
    # A comment in a SET (sqlcommenter's, an ORM's) was read as part of it: 42704 or 42601,
    # and the session's modes left as they were
    steps: list[Step] = [
        "SET default_transaction_read_only = 'on' -- a comment",
        "SHOW default_transaction_read_only",
        "SET /* a comment */ default_transaction_read_only = off",
        "SHOW default_transaction_read_only",
        "SET SESSION CHARACTERISTICS AS TRANSACTION /* a comment */ READ ONLY",
        "SHOW default_transaction_read_only",
    ]
    assert transcript(dsn, steps) == [
        ("SET", IDLE),
        ("SHOW", IDLE, "on"),
        ("SET", IDLE),
        ("SHOW", IDLE, "off"),
        ("SET", IDLE),
        ("SHOW", IDLE, "on"),
    ]
