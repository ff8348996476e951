"""Transactions: savepoints, a failed statement (SQLite's rule and PostgreSQL's), read-only."""

from __future__ import annotations

import threading

import pytest

import meterseal.cascadb as cascadb
from meterseal.cascadb import Database, MemoryKv


@pytest.fixture
def db() -> Database:
    database = Database(MemoryKv())
    database.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    database.execute("INSERT INTO t VALUES (1, 'one')")
    return database


def _rows(db: Database) -> list[tuple[object, ...]]:
    return db.execute("SELECT k, v FROM t ORDER BY k").rows


def test_savepoints_nest_roll_back_and_release_into_the_transaction(db: Database) -> None:
    session = db.session(autocommit=False)
    session.execute("SAVEPOINT outer_sp")
    session.execute("INSERT INTO t VALUES (2, 'two')")
    session.execute("SAVEPOINT inner_sp")
    session.execute("INSERT INTO t VALUES (3, 'three')")
    session.execute("ROLLBACK TO inner_sp")  # 3 gone, inner_sp still open
    session.execute("INSERT INTO t VALUES (4, 'four')")
    assert session.execute("SELECT count(*) FROM t").rows == [(3,)]
    session.execute("RELEASE SAVEPOINT outer_sp")  # inner_sp released with it
    with pytest.raises(cascadb.ProgrammingError, match="no such savepoint"):
        session.execute("ROLLBACK TO inner_sp")
    session.commit()
    assert _rows(db) == [(1, "one"), (2, "two"), (4, "four")]


def test_a_savepoint_outside_a_transaction_opens_one(db: Database) -> None:
    session = db.session(autocommit=True)
    session.execute("SAVEPOINT sp")
    session.execute("INSERT INTO t VALUES (2, 'two')")
    assert session.in_transaction
    session.execute("ROLLBACK")
    assert not session.in_transaction
    assert _rows(db) == [(1, "one")]


def test_sqlite_rule_a_failed_statement_leaves_nothing_and_the_transaction_goes_on(
    db: Database,
) -> None:
    connection = cascadb.connect(db)  # the PEP 249 driver reads SQLite's SQL, and its rule
    connection.execute("INSERT INTO t VALUES (2, 'two')")
    with pytest.raises(cascadb.IntegrityError):
        connection.execute("INSERT INTO t VALUES (3, 'three'), (1, 'again')")
    connection.execute("INSERT INTO t VALUES (5, 'five')")
    connection.commit()
    assert _rows(db) == [(1, "one"), (2, "two"), (5, "five")]


def test_postgres_rule_a_failed_statement_aborts_the_transaction_until_rollback(
    db: Database,
) -> None:
    session = db.session(autocommit=True, dialect="postgres")
    assert session.abort_on_error
    session.execute("BEGIN")
    session.execute("INSERT INTO t VALUES (2, 'two')")
    with pytest.raises(cascadb.IntegrityError):
        session.execute("INSERT INTO t VALUES (1, 'again')")
    with pytest.raises(cascadb.TransactionAborted, match="current transaction is aborted"):
        session.execute("SELECT 1")
    assert session.execute("COMMIT").command == "ROLLBACK"  # as PostgreSQL answers it
    assert _rows(db) == [(1, "one")]


def test_postgres_rule_rollback_to_a_savepoint_recovers(db: Database) -> None:
    session = db.session(autocommit=True, dialect="postgres")
    session.execute("BEGIN")
    session.execute("INSERT INTO t VALUES (2, 'two')")
    session.execute("SAVEPOINT sp")
    with pytest.raises(cascadb.IntegrityError):
        session.execute("INSERT INTO t VALUES (1, 'again')")
    session.execute("ROLLBACK TO SAVEPOINT sp")
    session.execute("INSERT INTO t VALUES (3, 'three')")
    assert session.execute("COMMIT").command == "COMMIT"
    assert _rows(db) == [(1, "one"), (2, "two"), (3, "three")]


def test_a_read_only_connection_only_queries(db: Database) -> None:
    reader = cascadb.connect(db, read_only=True)
    assert reader.execute("SELECT v FROM t").fetchall() == [("one",)]
    for sql in ("INSERT INTO t VALUES (9, 'x')", "DELETE FROM t", "DROP TABLE t"):
        with pytest.raises(cascadb.OperationalError, match="read-only"):
            reader.execute(sql)
    reader.rollback()
    assert _rows(db) == [(1, "one")]


def test_a_reading_transaction_reads_what_is_committed_without_waiting(db: Database) -> None:
    writer = db.session(autocommit=False)
    writer.execute("INSERT INTO t VALUES (2, 'two')")  # the write transaction is open
    reader = db.session(autocommit=False)
    reader.begin_read()
    assert reader.execute("SELECT k FROM t").rows == [(1,)]  # did not wait for the writer
    writer.commit()
    assert reader.execute("SELECT k FROM t").rows == [(1,), (2,)]  # read committed
    other = db.session(autocommit=False)
    other.execute("INSERT INTO t VALUES (3, 'three')")  # the next writer
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(reader.execute("DELETE FROM t").rowcount))
    thread.start()  # the reader's first write waits for the open write transaction
    thread.join(0.2)
    assert done == []
    other.commit()
    thread.join()
    reader.commit()
    assert done == [3]
    assert _rows(db) == []


def test_a_reader_begun_and_never_used_leaves_the_next_transaction_a_writer(db: Database) -> None:
    session = db.session(autocommit=False)
    session.begin_read()
    session.commit()  # nothing ran: no transaction was open
    session.execute("SELECT count(*) FROM t")  # a writer from its first statement, a read
    other = db.session(autocommit=False)
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(other.execute("DELETE FROM t").rowcount))
    thread.start()
    thread.join(0.2)
    assert done == []  # waits: `session` holds the writer lock since its SELECT
    session.commit()
    thread.join()
    other.commit()
    assert done == [1]


def test_the_driver_takes_postgres_rule_when_asked(db: Database) -> None:
    connection = cascadb.connect(db, abort_on_error=True)
    connection.execute("INSERT INTO t VALUES (2, 'two')")
    with pytest.raises(cascadb.IntegrityError):
        connection.execute("INSERT INTO t VALUES (1, 'again')")
    with pytest.raises(cascadb.TransactionAborted) as aborted:
        connection.execute("INSERT INTO t VALUES (3, 'three')")
    assert aborted.value.sqlstate == "25P02"
    connection.commit()  # of an aborted transaction: rolled back, as PostgreSQL's COMMIT
    assert _rows(db) == [(1, "one")]
    connection.execute("INSERT INTO t VALUES (4, 'four')")  # a new transaction goes on
    connection.commit()
    assert _rows(db) == [(1, "one"), (4, "four")]


def _writer_mid_transaction(db: Database) -> cascadb.Connection:
    """A connection holding the write lock with row 2 uncommitted; waiting for it fails fast."""
    db.lock_timeout = 0.2
    writer = cascadb.connect(db)
    writer.execute("INSERT INTO t VALUES (2, 'two')")
    return writer


def test_driver_reads_outside_a_write_transaction_do_not_wait_for_an_open_one(
    db: Database,
) -> None:
    writer = _writer_mid_transaction(db)
    auto = cascadb.connect(db, autocommit=True)
    assert auto.execute("SELECT k FROM t").fetchall() == [(1,)]  # committed data only
    reader = cascadb.connect(db, read_only=True)  # its transactions can only read
    assert reader.execute("SELECT k FROM t").fetchall() == [(1,)]
    assert reader.session.in_transaction  # its transaction stays open...
    assert not reader.session.writing  # ...as a reader
    committed = cascadb.connect(db, read_committed=True)  # a reader until its first write
    assert committed.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    with pytest.raises(cascadb.OperationalError, match="busy"):
        committed.execute("UPDATE t SET v = 'uno' WHERE k = 1")  # the write waits for the lock
    serial = cascadb.connect(db)  # serializable: the write lock from its first statement
    with pytest.raises(cascadb.OperationalError, match="busy"):
        serial.execute("SELECT k FROM t")
    with pytest.raises(cascadb.OperationalError, match="busy"):
        auto.execute("INSERT INTO t VALUES (3, 'three')")
    writer.commit()
    assert auto.execute("SELECT k FROM t").fetchall() == [(1,), (2,)]
    assert reader.execute("SELECT k FROM t").fetchall() == [(1,), (2,)]  # read committed
    committed.execute("UPDATE t SET v = 'uno' WHERE k = 1")  # now the writer
    committed.commit()
    assert _rows(db) == [(1, "uno"), (2, "two")]


def test_a_read_committed_driver_begins_a_reader_unless_begin_asks_for_the_lock(
    db: Database,
) -> None:
    writer = _writer_mid_transaction(db)
    committed = cascadb.connect(db, autocommit=True, read_committed=True)
    committed.execute("BEGIN")
    assert committed.execute("SELECT k FROM t").fetchall() == [(1,)]  # a reader
    committed.execute("COMMIT")
    for begin in ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"):  # SQLite's: the write lock at BEGIN
        with pytest.raises(cascadb.OperationalError, match="busy"):
            committed.execute(begin)
        assert not committed.session.in_transaction
    writer.rollback()


def test_a_table_listing_outside_a_write_transaction_waits_for_no_writer(db: Database) -> None:
    writer = _writer_mid_transaction(db)  # a listing that waited for its lock would fail
    writer.execute("CREATE TABLE u (k INTEGER PRIMARY KEY)")  # not committed yet
    auto = db.session(autocommit=True)
    committed = db.session(autocommit=False, read_committed=True)
    read_only = db.session(autocommit=False, read_only=True)
    for session in (auto, committed, read_only):
        assert [t.name for t in session.tables()] == ["t"]  # as committed
        assert not session.writing
    assert not auto.in_transaction
    serial = db.session(autocommit=False)  # serializable: the write lock from its first read
    with pytest.raises(cascadb.OperationalError, match="busy"):
        serial.tables()
    writer.commit()
    assert [t.name for t in auto.tables()] == ["t", "u"]
    committed.commit()
    read_only.commit()


def test_a_begin_that_waited_in_vain_leaves_its_level_to_no_later_block(db: Database) -> None:
    # A BEGIN asking for the write lock that timed out kept its level for the session's next
    # transaction: the next plain BEGIN held the write lock and told SERIALIZABLE.
    writer = _writer_mid_transaction(db)
    for dialect, begin in (
        ("postgres", "BEGIN ISOLATION LEVEL SERIALIZABLE"),
        ("sqlite", "BEGIN IMMEDIATE"),
    ):
        committed = db.session(autocommit=True, dialect=dialect, read_committed=True)
        with pytest.raises(cascadb.OperationalError, match="busy"):
            committed.execute(begin)
        assert committed.isolation == "READ COMMITTED"
        committed.execute("BEGIN")
        assert (committed.isolation, committed.writing) == ("READ COMMITTED", False)
        assert committed.execute("SELECT k FROM t").rows == [(1,)]
        committed.execute("ROLLBACK")
    writer.rollback()
