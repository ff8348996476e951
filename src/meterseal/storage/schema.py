"""The store's tables (latest version) and their row types.

Times of readings are Unix seconds as the meter sends them (`timestamp`, `sent_at`: integers;
`received_at`: float seconds on the head-end clock). Registry times are timezone-aware
datetimes (UTC). The tables here describe the newest version; `migrations` builds them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import sqlalchemy as sa

METER_ID = 64
SHORT_TEXT = 64
PSEUDONYM_BYTES = 16


Key = tuple[str, int]  # (meter_id, counter): a signed original's primary key

# Autoincrement ids: BIGINT on PostgreSQL, but SQLite only aliases the rowid for INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """An aware UTC datetime on both engines (SQLite's DATETIME keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: meterseal stores timezone-aware UTC times only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        """Give back aware UTC datetimes."""
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
    }
)

# The bookkeeping table of `migrations`; its shape must never change.
schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
)

meters = sa.Table(
    "meters",
    metadata,
    sa.Column("meter_id", sa.String(METER_ID), primary_key=True),
    sa.Column("suite", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("certificate", sa.LargeBinary, nullable=False),  # DER
    sa.Column("customer_id", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("region_id", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Index(None, "customer_id"),  # a customer's meters, for each bill and audit (v6)
)

signed_originals = sa.Table(
    "signed_originals",
    metadata,
    sa.Column("meter_id", sa.ForeignKey("meters.meter_id"), primary_key=True),
    sa.Column("counter", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("energy_wh", sa.BigInteger, nullable=False),
    sa.Column("suite", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("signed_original", sa.LargeBinary, nullable=False),  # the COSE_Sign1
    sa.Column("sent_at", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Index(None, "meter_id", "timestamp"),
)

# The utility's view: no meter id, no customer id, only region and keyed pseudonym.
measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("region_id", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("pseudonym", sa.LargeBinary(PSEUDONYM_BYTES), nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("energy_wh", sa.BigInteger, nullable=False),
    sa.Column("phasor", sa.JSON(none_as_null=True), nullable=True),
    sa.Index(None, "region_id", "timestamp"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("reason", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("packet", sa.LargeBinary, nullable=False),
)

ingest_counters = sa.Table(
    "ingest_counters",
    metadata,
    sa.Column("outcome", sa.String(SHORT_TEXT), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

BILL_ID = 128

tariffs = sa.Table(
    "tariffs",
    metadata,
    sa.Column("tariff_id", sa.String(SHORT_TEXT), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", sa.LargeBinary, nullable=False),  # canonical CBOR
    sa.Column("digest", sa.LargeBinary(32), nullable=False),
    sa.Column("added_at", UtcDateTime, nullable=False),
)

# A bill, its manifest (packets in bill order with their leaf hashes) and its place in the log.
bills = sa.Table(
    "bills",
    metadata,
    sa.Column("bill_id", sa.String(BILL_ID), primary_key=True),
    sa.Column("customer_id", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("period_start", sa.BigInteger, nullable=False),
    sa.Column("period_end", sa.BigInteger, nullable=False),
    sa.Column("issued_at", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(8), nullable=False),
    sa.Column("total", sa.String(SHORT_TEXT), nullable=False),  # decimal text, never a float
    sa.Column("signed_bill", sa.LargeBinary, nullable=False),  # COSE_Sign1
    sa.Column("manifest", sa.LargeBinary, nullable=False),  # CBOR
    sa.Column("log_index", sa.BigInteger, nullable=False, unique=True),
    sa.Index(None, "customer_id", "period_start"),
)

# The append-only bill log (RFC 9162): leaf i is the signed bill appended i-th.
bill_log = sa.Table(
    "bill_log",
    metadata,
    sa.Column("log_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("bill_id", sa.String(BILL_ID), nullable=False, unique=True),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
)

# Signed tree heads of the bill log, one per size the log has had.
bill_log_heads = sa.Table(
    "bill_log_heads",
    metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("signed_head", sa.LargeBinary, nullable=False),  # COSE_Sign1 by the billing key
    sa.Column("issued_at", sa.BigInteger, nullable=False),
)

audit_reports = sa.Table(
    "audit_reports",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("bill_id", sa.String(BILL_ID), nullable=False),
    sa.Column("audited_at", sa.BigInteger, nullable=False),
    sa.Column("clean", sa.Boolean, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.Column("countersigned_bill", sa.LargeBinary, nullable=True),
    sa.Index(None, "bill_id"),
)

# The configuration and attestation service (meterseal.trust): secret versions encrypted
# under the CAS master key, allow rules, revoked measurements, nonces, and the CAS log (an
# RFC 9162 Merkle log; each row keeps the root after it and that head's MAC).
cas_secrets = sa.Table(
    "cas_secrets",
    metadata,
    sa.Column("name", sa.String(SHORT_TEXT), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),  # iv || AES-256-GCM
    sa.Column("created_at", UtcDateTime, nullable=False),
)

cas_policies = sa.Table(
    "cas_policies",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("stage", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("measurement", sa.LargeBinary(32), nullable=False),
    sa.Column("secret", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("added_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("measurement", "secret", "stage"),
)

cas_revocations = sa.Table(
    "cas_revocations",
    metadata,
    sa.Column("measurement", sa.LargeBinary(32), primary_key=True),
    sa.Column("revoked_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

cas_secret_revocations = sa.Table(
    "cas_secret_revocations",
    metadata,
    sa.Column("name", sa.String(SHORT_TEXT), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),  # withdrawn through
    sa.Column("revoked_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

cas_nonces = sa.Table(
    "cas_nonces",
    metadata,
    sa.Column("nonce", sa.LargeBinary(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("issued_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Index(None, "expires_at"),
)

cas_log = sa.Table(
    "cas_log",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("measurement", sa.LargeBinary(32), nullable=True),
    sa.Column("entry", sa.LargeBinary, nullable=False),  # canonical CBOR: the leaf's data
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("mac", sa.LargeBinary(32), nullable=False),
    sa.Index(None, "measurement"),
)

# Each meter's latest integrity verdict (meterseal.integrity), from a report its monitor
# signed with the meter key; readings of a meter judged malicious are quarantined.
meter_integrity = sa.Table(
    "meter_integrity",
    metadata,
    sa.Column("meter_id", sa.ForeignKey("meters.meter_id"), primary_key=True),
    sa.Column("verdict", sa.String(16), nullable=False),  # trusted or malicious
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("issued_at_ms", sa.BigInteger, nullable=False),  # the report's own time
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("report", sa.LargeBinary, nullable=False),  # the signed report, as evidence
)


# Imported readings no meter signed (v8): kept apart from the signed originals, each with its
# canonical record (`billing.unsigned`), where it came from and when it was imported.
unsigned_readings = sa.Table(
    "unsigned_readings",
    metadata,
    sa.Column("meter_id", sa.ForeignKey("meters.meter_id"), primary_key=True),
    sa.Column("timestamp", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("energy_wh", sa.BigInteger, nullable=False),
    sa.Column("quality", sa.String(16), nullable=False),
    sa.Column("record", sa.LargeBinary, nullable=False),  # billing.unsigned's CBOR
    sa.Column("source", sa.Text, nullable=False),  # e.g. csv:readings.csv
    sa.Column("imported_at", UtcDateTime, nullable=False),
)

# Which customer a meter belongs to when (v8): [valid_from, valid_to) in Unix seconds, valid_to
# null while it lasts. Move-in and move-out dates; several meters per customer.
meter_assignments = sa.Table(
    "meter_assignments",
    metadata,
    sa.Column("meter_id", sa.ForeignKey("meters.meter_id"), primary_key=True),
    sa.Column("valid_from", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("valid_to", sa.BigInteger, nullable=True),
    sa.Column("customer_id", sa.String(SHORT_TEXT), nullable=False),
    sa.Index(None, "customer_id"),
)


# People and machines (meterseal.accounts): accounts with argon2id password hashes, API keys
# (only the SHA-256 of each secret), and the access log of reads of customers' data.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("username", sa.String(SHORT_TEXT), primary_key=True),
    sa.Column("roles", sa.String(128), nullable=False),  # comma-separated role names
    sa.Column("customer_id", sa.String(SHORT_TEXT), nullable=True),  # set for a customer
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("disabled_at", sa.Double, nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("username", sa.ForeignKey("accounts.username"), nullable=False),
    sa.Column("digest", sa.LargeBinary(32), nullable=False),
    sa.Column("scopes", sa.String(128), nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
)

# Login tokens signed out before they expire (a row lives until the token's expiry).
revoked_tokens = sa.Table(
    "revoked_tokens",
    metadata,
    sa.Column("token_id", sa.String(SHORT_TEXT), primary_key=True),
    sa.Column("username", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=False),
    sa.Index(None, "expires_at"),
)

access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("subject", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("roles", sa.String(128), nullable=False),
    sa.Column("route", sa.String(256), nullable=False),
    sa.Column("customer_id", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("object_id", sa.String(256), nullable=False),
    sa.Index(None, "customer_id", "id"),
)

# The administrators' change log (accounts.changes): a hash chain, each digest over the one
# before and the entry.
admin_changes = sa.Table(
    "admin_changes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("subject", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("roles", sa.String(128), nullable=False),
    sa.Column("action", sa.String(SHORT_TEXT), nullable=False),
    sa.Column("object_id", sa.String(256), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("previous", sa.LargeBinary(32), nullable=False),
    sa.Column("digest", sa.LargeBinary(32), nullable=False),
)


class StoredOriginal(NamedTuple):
    """A signed original as billing and audit read it back."""

    meter_id: str
    counter: int
    timestamp: int
    interval: int
    energy_wh: int
    suite: str
    signed_original: bytes
    sent_at: int
    received_at: float


class RegionalLoad(NamedTuple):
    """Energy of one region in one time bucket, from anonymized measurements only."""

    region_id: str
    bucket_start: int
    energy_wh: int
    readings: int


class QuarantinedPacket(NamedTuple):
    """A refused packet as kept for operators."""

    id: int
    received_at: float
    reason: str
    source: str
    packet: bytes


class MeterRow(NamedTuple):
    """A row of the meters table, certificate still as DER bytes."""

    meter_id: str
    suite: str
    certificate: bytes
    customer_id: str
    region_id: str
    registered_at: dt.datetime
    revoked_at: dt.datetime | None
