"""Versioned schema migrations: an ordered list of steps and `migrate`, which applies them.

Each step's DDL is frozen here as it was when the step was written (its own MetaData), so
an old database and a new one end with the same tables whatever `schema.py` says today.
Changing the schema means appending a step and updating `schema.py` to match; a test checks
that a migrated database looks exactly like `schema.metadata`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from meterseal.errors import StorageError
from meterseal.storage.engine import begin_write
from meterseal.storage.schema import (
    BigId,
    UtcDateTime,
    schema_version,
)

# Any constant will do: it only has to be the same in every process migrating one database.
_PG_LOCK_KEY = 0x6D657465_72736561


@dataclass(frozen=True)
class Migration:
    """One schema version: its number, what it does, and the function that does it."""

    version: int
    summary: str
    apply: Callable[[Connection], None]


def _v1_tables() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "meters",
        md,
        sa.Column("meter_id", sa.String(64), primary_key=True),
        sa.Column("suite", sa.String(64), nullable=False),
        sa.Column("certificate", sa.LargeBinary, nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("region_id", sa.String(64), nullable=False),
        sa.Column("registered_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("meter_id", name="pk_meters"),
    )
    sa.Table(
        "signed_originals",
        md,
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("counter", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("interval", sa.Integer, nullable=False),
        sa.Column("energy_wh", sa.BigInteger, nullable=False),
        sa.Column("suite", sa.String(64), nullable=False),
        sa.Column("signed_original", sa.LargeBinary, nullable=False),
        sa.Column("sent_at", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "counter", name="pk_signed_originals"),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.meter_id"], name="fk_signed_originals_meter_id"
        ),
        sa.Index("ix_signed_originals_meter_id_timestamp", "meter_id", "timestamp"),
    )
    sa.Table(
        "measurements",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("region_id", sa.String(64), nullable=False),
        sa.Column("pseudonym", sa.LargeBinary(16), nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("interval", sa.Integer, nullable=False),
        sa.Column("energy_wh", sa.BigInteger, nullable=False),
        sa.Column("phasor", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_measurements"),
    )
    sa.Table(
        "quarantine",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("packet", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
    )
    return md


def _v1(connection: Connection) -> None:
    _v1_tables().create_all(connection)


def _v2(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "ingest_counters",
        md,
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("outcome", name="pk_ingest_counters"),
    ).create(connection)
    # Regional load scans one region over a time range; v1 had only the primary key.
    connection.exec_driver_sql(
        'CREATE INDEX ix_measurements_region_id_timestamp ON measurements (region_id, "timestamp")'
    )


def _v3(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "tariffs",
        md,
        sa.Column("tariff_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tariff_id", "version", name="pk_tariffs"),
    )
    sa.Table(
        "bills",
        md,
        sa.Column("bill_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("period_end", sa.BigInteger, nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("total", sa.String(64), nullable=False),
        sa.Column("signed_bill", sa.LargeBinary, nullable=False),
        sa.Column("manifest", sa.LargeBinary, nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("bill_id", name="pk_bills"),
        sa.UniqueConstraint("log_index", name="uq_bills_log_index"),
        sa.Index("ix_bills_customer_id_period_start", "customer_id", "period_start"),
    )
    sa.Table(
        "bill_log",
        md,
        sa.Column("log_index", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("bill_id", sa.String(128), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("log_index", name="pk_bill_log"),
        sa.UniqueConstraint("bill_id", name="uq_bill_log_bill_id"),
    )
    sa.Table(
        "bill_log_heads",
        md,
        sa.Column("tree_size", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("signed_head", sa.LargeBinary, nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_bill_log_heads"),
    )
    sa.Table(
        "audit_reports",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("bill_id", sa.String(128), nullable=False),
        sa.Column("audited_at", sa.BigInteger, nullable=False),
        sa.Column("clean", sa.Boolean, nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("countersigned_bill", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_reports"),
        sa.Index("ix_audit_reports_bill_id", "bill_id"),
    )
    md.create_all(connection)


def _v4(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "cas_secrets",
        md,
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_cas_secrets"),
    )
    sa.Table(
        "cas_policies",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("measurement", sa.LargeBinary(32), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cas_policies"),
        sa.UniqueConstraint("measurement", "secret", "stage", name="uq_cas_policies_measurement"),
    )
    sa.Table(
        "cas_revocations",
        md,
        sa.Column("measurement", sa.LargeBinary(32), nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("measurement", name="pk_cas_revocations"),
    )
    sa.Table(
        "cas_nonces",
        md,
        sa.Column("nonce", sa.LargeBinary(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_cas_nonces"),
        sa.Index("ix_cas_nonces_expires_at", "expires_at"),
    )
    sa.Table(
        "cas_log",
        md,
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("measurement", sa.LargeBinary(32), nullable=True),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("mac", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_cas_log"),
        sa.Index("ix_cas_log_measurement", "measurement"),
    )
    md.create_all(connection)


def _v5(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table("meters", md, sa.Column("meter_id", sa.String(64), primary_key=True))
    sa.Table(
        "meter_integrity",
        md,
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("issued_at_ms", sa.BigInteger, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("report", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("meter_id", name="pk_meter_integrity"),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.meter_id"], name="fk_meter_integrity_meter_id"
        ),
    ).create(connection)


def _v6(connection: Connection) -> None:
    # Each bill and audit looks one customer's meters up; v1 had only the primary key.
    connection.exec_driver_sql("CREATE INDEX ix_meters_customer_id ON meters (customer_id)")
    if connection.dialect.name == "postgresql":
        # A manifest is ~150 kB of hashes, which do not compress: PostgreSQL's attempt to
        # compress each one cost ~1.8 ms a bill (docs/benchmarks.md). Kept out of line as is.
        connection.exec_driver_sql("ALTER TABLE bills ALTER COLUMN manifest SET STORAGE EXTERNAL")


def _v7(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "accounts",
        md,
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("roles", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("disabled_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("username", name="pk_accounts"),
    )
    sa.Table(
        "api_keys",
        md,
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", sa.String(128), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["username"], ["accounts.username"], name="fk_api_keys_username"),
    )
    sa.Table(
        "access_log",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("roles", sa.String(128), nullable=False),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
        sa.Index("ix_access_log_customer_id_id", "customer_id", "id"),
    )
    md.create_all(connection)


def _v8(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table("meters", md, sa.Column("meter_id", sa.String(64), primary_key=True))
    sa.Table(
        "unsigned_readings",
        md,
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("interval", sa.Integer, nullable=False),
        sa.Column("energy_wh", sa.BigInteger, nullable=False),
        sa.Column("quality", sa.String(16), nullable=False),
        sa.Column("record", sa.LargeBinary, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("imported_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "timestamp", name="pk_unsigned_readings"),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.meter_id"], name="fk_unsigned_readings_meter_id"
        ),
    )
    sa.Table(
        "meter_assignments",
        md,
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("valid_to", sa.BigInteger, nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "valid_from", name="pk_meter_assignments"),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.meter_id"], name="fk_meter_assignments_meter_id"
        ),
        sa.Index("ix_meter_assignments_customer_id", "customer_id"),
    )
    md.create_all(
        connection, tables=[md.tables[n] for n in ("unsigned_readings", "meter_assignments")]
    )


def _v9(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "revoked_tokens",
        md,
        sa.Column("token_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("token_id", name="pk_revoked_tokens"),
        sa.Index("ix_revoked_tokens_expires_at", "expires_at"),
    )
    md.create_all(connection)


def _v10(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "admin_changes",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("roles", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(256), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("previous", sa.LargeBinary(32), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_changes"),
    )
    md.create_all(connection)


def _v11(connection: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "cas_secret_revocations",
        md,
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("revoked_at", UtcDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_cas_secret_revocations"),
    )
    md.create_all(connection)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "meters, signed originals, measurements, quarantine", _v1),
    Migration(2, "ingest counters; index measurements by region and time", _v2),
    Migration(3, "tariffs, bills, the bill log and its signed heads, audit reports", _v3),
    Migration(4, "CAS: secrets, allow rules, revocations, nonces, the CAS log", _v4),
    Migration(5, "meter integrity verdicts (signed monitor reports)", _v5),
    Migration(6, "index meters by customer; bill manifests stored uncompressed", _v6),
    Migration(7, "accounts, API keys, the access log", _v7),
    Migration(8, "unsigned imported readings; customer-meter assignments with dates", _v8),
    Migration(9, "login tokens revoked by signing out", _v9),
    Migration(10, "the administrators' change log (a hash chain)", _v10),
    Migration(11, "CAS: secrets withdrawn through a version", _v11),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(connection: Connection) -> int:
    """The schema version of the database behind `connection`; 0 for an empty one."""
    if not sa.inspect(connection).has_table(schema_version.name):
        return 0
    latest = connection.scalar(sa.select(sa.func.max(schema_version.c.version)))
    return int(latest or 0)


def _create_search_path_schema(connection: Connection) -> None:
    """Create the schema the connection's search_path names first, when it does not exist.

    A deployment's store lives in its own schema (meterseal.toml's store.schema puts it in
    the URL's search_path), so deployments can share one database.
    """
    if connection.exec_driver_sql("SELECT current_schema()").scalar() is not None:
        return
    search_path = str(connection.exec_driver_sql("SHOW search_path").scalar() or "")
    first = search_path.split(",")[0].strip().strip('"')
    if first and first != "$user":
        quoted = connection.dialect.identifier_preparer.quote(first)
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")


def migrate(engine: Engine, target: int = LATEST_VERSION, *, now: dt.datetime | None = None) -> int:
    """Upgrade the database to `target` (default: latest) in one transaction; return it."""
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"no schema version {target}; latest is {LATEST_VERSION}")
    with begin_write(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Serializes concurrent `migrate` calls; SQLite's BEGIN IMMEDIATE already does.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            _create_search_path_schema(connection)
        schema_version.create(connection, checkfirst=True)
        version = current_version(connection)
        if version > LATEST_VERSION:
            raise StorageError(
                f"database schema version {version} is newer than this meterseal "
                f"({LATEST_VERSION}); upgrade meterseal instead"
            )
        for step in MIGRATIONS[version:target]:
            step.apply(connection)
            connection.execute(
                schema_version.insert().values(
                    version=step.version,
                    summary=step.summary,
                    applied_at=now or dt.datetime.now(dt.UTC),
                )
            )
        return max(version, target)
