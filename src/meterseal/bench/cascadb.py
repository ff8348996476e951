"""`meterseal bench cascadb`: SQL over the KVS beside the bare KVS, memory and PostgreSQL.

The data collector's load and the analysis queries, on the same meter readings (a month of
15-minute readings per meter, 2,880 by default) in one run:

* inserts: multi-row INSERT statements of one meter-day (96 readings) each, committed;
* point selects: one reading by (meter, timestamp), the primary key;
* range scan: one meter's month (`WHERE meter = ?`: one key prefix);
* merge join: customers joined with all their readings on the first key column, counted.

Each runs through CascaDB on the secure KVS (memory nodes, rep:1: the store's sealing, not the
disks), through the bare KVS (the same keys and values, the same gets, puts and scans, without
SQL: the bound), through CascaDB and the bare store on a MemoryKv (SQL's own cost), and through
PostgreSQL at MS_POSTGRES_URL (a schema of its own, dropped after). Targets: CascaDB's range
scan and inserts on the KVS within 1.5x of the bare KVS. The answers must agree everywhere.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meterseal.cascadb import Database, MemoryKv
from meterseal.cascadb.catalog import Dictionary, Table
from meterseal.cascadb.keys import END, key_of
from meterseal.cascadb.kv import OrderedKv
from meterseal.cascadb.kvs_adapter import KvsOrderedKv, LoopThread
from meterseal.cascadb.names import name_of
from meterseal.kvs.nodes import MemoryCatalog, MemoryNode
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import ObjectStore

TARGET = 1.5
OPERATIONS = ("insert", "point", "range", "join")
SCHEMA = """
CREATE TABLE customer(meter TEXT PRIMARY KEY, name TEXT);
CREATE TABLE reading(meter TEXT, ts INTEGER, kwh REAL, quality INTEGER, PRIMARY KEY (meter, ts));
"""
POINT = "SELECT kwh FROM reading WHERE meter = ? AND ts = ?"
RANGE = "SELECT ts, kwh FROM reading WHERE meter = ?"
JOIN = (
    "SELECT c.name, COUNT(*) FROM customer c JOIN reading r ON r.meter = c.meter "
    "GROUP BY c.name ORDER BY c.name"
)
Step = Callable[[str], None]


@dataclass(frozen=True)
class CascadbPlan:
    """Meters, readings per meter, readings per INSERT, point selects, scans and joins."""

    meters: int = 4
    readings: int = 2880
    batch: int = 96
    points: int = 300
    scans: int = 5
    postgres: str | None = None

    def steps(self) -> int:
        """Progress steps: the KVS pair, the memory pair, PostgreSQL."""
        return 3


QUICK = CascadbPlan(meters=2, readings=192, batch=96, points=20, scans=2)


@dataclass
class SystemResult:
    """Seconds per operation of one system, and its answers (to compare across systems)."""

    name: str
    seconds: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _readings(plan: CascadbPlan, meter: int) -> list[tuple[str, int, float, int]]:
    noise = random.Random(meter)
    start = 1_780_000_000
    return [
        (f"m{meter:05d}", start + 900 * i, round(noise.uniform(0, 2), 3), 0)
        for i in range(plan.readings)
    ]


def _batches(plan: CascadbPlan) -> list[list[tuple[str, int, float, int]]]:
    found = []
    for meter in range(plan.meters):
        rows = _readings(plan, meter)
        found += [rows[i : i + plan.batch] for i in range(0, len(rows), plan.batch)]
    return found


def _probes(plan: CascadbPlan) -> list[tuple[str, int]]:
    pick = random.Random(7)
    return [
        (f"m{pick.randrange(plan.meters):05d}", 1_780_000_000 + 900 * pick.randrange(plan.readings))
        for _ in range(plan.points)
    ]


def _timed(work: Callable[[], Any], count: int) -> tuple[float, Any]:
    start = time.perf_counter()
    answer = work()
    return (time.perf_counter() - start) / count, answer


class SqlSide:
    """CascaDB's four operations on a store, one step at a time."""

    def __init__(self, kv: OrderedKv, plan: CascadbPlan) -> None:
        self.session = Database(kv).session()
        self.session.execute(SCHEMA)
        customers = [(f"m{m:05d}", f"customer {m}") for m in range(plan.meters)]
        self.session.execute(
            "INSERT INTO customer VALUES "  # noqa: S608 - placeholders only; values bound
            + ", ".join("(?, ?)" for _ in customers),
            [v for row in customers for v in row],
        )

    def insert(self, rows: list[tuple[str, int, float, int]]) -> None:
        """One INSERT statement of `rows`, committed."""
        values = ", ".join("(?, ?, ?, ?)" for _ in rows)
        insert = f"INSERT INTO reading VALUES {values}"  # noqa: S608 - placeholders only
        self.session.execute(insert, [v for r in rows for v in r])

    def point(self, probe: tuple[str, int]) -> Any:
        """One reading's kWh by its key."""
        return self.session.execute(POINT, probe).rows[0][0]

    def range(self, meter: str) -> int:
        """How many readings the meter's month has."""
        return len(self.session.execute(RANGE, [meter]).rows)

    def join(self) -> Any:
        """Readings per customer, by a merge join."""
        return self.session.execute(JOIN).rows


class BareSide:
    """The same key accesses without SQL: puts, gets, a prefix, both tables' ranges."""

    def __init__(
        self, kv: OrderedKv, source: OrderedKv, put: Callable[[list[tuple[bytes, bytes]]], None]
    ) -> None:
        self.kv, self.put = kv, put
        self.table, self.customers = _tables(source)
        rows = self.table.rows_prefix()
        kv.write([(k, v) for k, v in source.scan(b"", None) if not k.startswith(rows)])

    def insert(self, rows: list[tuple[str, int, float, int]]) -> None:
        """The rows' puts."""
        self.put([(self.table.row_key(row), self.table.encode_row(row)) for row in rows])

    def point(self, probe: tuple[str, int]) -> Any:
        """One get."""
        return self.kv.get(key_of(self.table.id, 1, probe))

    def range(self, meter: str) -> int:
        """The scan of the meter's key prefix."""
        prefix = key_of(self.table.id, 1, [meter])
        return len(list(self.kv.scan(prefix, prefix + END)))

    def join(self) -> Any:
        """The two key ranges a merge join reads."""
        list(self.kv.scan(self.customers.rows_prefix(), self.customers.rows_prefix() + END))
        return len(list(self.kv.scan(self.table.rows_prefix(), self.table.rows_prefix() + END)))


def run_pair(
    names: tuple[str, str], sides: tuple[Any, Any], plan: CascadbPlan
) -> list[SystemResult]:
    """Both sides' operations, alternating step by step so both see the same load."""
    results = [SystemResult(names[0]), SystemResult(names[1])]
    work: list[tuple[str, str, Any, int]] = []  # (operation, method, argument, readings)
    work += [("insert", "insert", b, len(b)) for b in _batches(plan)]
    work += [("point", "point", p, 1) for p in _probes(plan)]
    work += [("range", "range", f"m{i % plan.meters:05d}", 1) for i in range(plan.scans)]
    work += [("join", "join", None, 1) for _ in range(plan.scans)]
    totals: list[dict[str, float]] = [dict.fromkeys(OPERATIONS, 0.0) for _ in sides]
    counts: Counter[str] = Counter()
    for operation, method, argument, count in work:
        counts[operation] += count
        for side, result, total in zip(sides, results, totals, strict=True):
            call = getattr(side, method)
            start = time.perf_counter()
            answer = call() if argument is None else call(argument)
            total[operation] += time.perf_counter() - start
            result.answers.setdefault(operation, []).append(answer)
    for result, total in zip(results, totals, strict=True):
        result.seconds = {op: total[op] / counts[op] for op in OPERATIONS}
    sql = results[0]
    sql.answers["join"] = sql.answers["join"][0]
    del results[1].answers["join"], results[1].answers["point"]
    sql.note = sides[0].session.execute(JOIN).plan[1]
    return results


def _memory_store() -> ObjectStore:
    master = os.urandom(32)
    return ObjectStore(
        [MemoryNode("n0")],
        MemoryCatalog(),
        lambda bucket: derive_bucket_key(master, bucket),
        clock=time.time,
        rng=os.urandom,
        chunk_size=1 << 20,
    )


def _tables(kv: OrderedKv) -> tuple[Table, Table]:
    dictionary = Dictionary(kv)
    return dictionary.require("reading"), dictionary.require("customer")


def run_kvs(plan: CascadbPlan, step: Step) -> list[SystemResult]:
    """CascaDB on the KVS beside the bare KVS (another bucket of the same store)."""
    runner = LoopThread()
    try:
        store = _memory_store()
        step("CascaDB on the KVS beside the bare KVS")
        sql = SqlSide(KvsOrderedKv(store, "cascadb", runner), plan)

        async def puts(batch: list[tuple[bytes, bytes]]) -> None:
            for key, value in batch:
                await store.put_bytes("bare", name_of(key), value)

        bare = BareSide(
            KvsOrderedKv(store, "bare", runner),
            sql.session.database.kv,
            lambda batch: runner.run(puts(batch)),
        )
        return run_pair(("CascaDB on the KVS", "bare KVS"), (sql, bare), plan)
    finally:
        runner.close()


def run_memory(plan: CascadbPlan, step: Step) -> list[SystemResult]:
    """CascaDB on a MemoryKv beside the bare MemoryKv."""
    step("CascaDB in memory beside the bare memory store")
    sql = SqlSide(MemoryKv(), plan)
    bare_kv = MemoryKv()
    bare = BareSide(bare_kv, sql.session.database.kv, bare_kv.write)
    return run_pair(("CascaDB in memory", "bare memory"), (sql, bare), plan)


def run_postgres(plan: CascadbPlan, step: Step) -> SystemResult:
    """The same statements on PostgreSQL, in a schema of the run's own."""
    step("PostgreSQL")
    result = SystemResult("PostgreSQL")
    if plan.postgres is None:
        result.note = "not measured: no MS_POSTGRES_URL"
        return result
    import psycopg

    url = plan.postgres.replace("postgresql+psycopg://", "postgresql://")
    schema = f"cascadb_bench_{os.urandom(4).hex()}"
    try:
        connection = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        result.note = f"not reachable: {str(exc).splitlines()[0]}"
        return result
    with connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        try:
            connection.execute(f"SET search_path TO {schema}")
            _postgres_ops(connection, plan, result)
        finally:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
    return result


def _postgres_ops(connection: Any, plan: CascadbPlan, result: SystemResult) -> None:
    for statement in SCHEMA.strip().split(";"):
        if statement.strip():
            connection.execute(statement.replace("REAL", "DOUBLE PRECISION"))
    customers = [(f"m{m:05d}", f"customer {m}") for m in range(plan.meters)]
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO customer VALUES (%s, %s)", customers)
    batches = _batches(plan)

    def insert() -> None:
        for rows in batches:
            values = ", ".join("(%s, %s, %s, %s)" for _ in rows)
            insert = f"INSERT INTO reading VALUES {values}"  # noqa: S608 - placeholders only
            connection.execute(insert, [v for r in rows for v in r])

    result.seconds["insert"], _ = _timed(insert, plan.meters * plan.readings)
    probes = _probes(plan)
    point, ranged = POINT.replace("?", "%s"), RANGE.replace("?", "%s")
    result.seconds["point"], result.answers["point"] = _timed(
        lambda: [connection.execute(point, p).fetchone()[0] for p in probes], len(probes)
    )
    meters = [f"m{i % plan.meters:05d}" for i in range(plan.scans)]
    result.seconds["range"], result.answers["range"] = _timed(
        lambda: [len(connection.execute(ranged, [m]).fetchall()) for m in meters], len(meters)
    )
    result.seconds["join"], joined = _timed(
        lambda: [connection.execute(JOIN).fetchall() for _ in range(plan.scans)], plan.scans
    )
    result.answers["join"] = joined[0]
    result.answers["join"] = [tuple(row) for row in result.answers["join"]]


def run_all(plan: CascadbPlan, step: Step) -> list[SystemResult]:
    """Every system, in print order."""
    return [*run_kvs(plan, step), *run_memory(plan, step), run_postgres(plan, step)]


def agree(results: list[SystemResult]) -> bool:
    """Whether every system that answered gave the same answers."""
    for operation in ("point", "range", "join"):
        answers = [r.answers[operation] for r in results if operation in r.answers]
        if any(a != answers[0] for a in answers):
            return False
    return True
