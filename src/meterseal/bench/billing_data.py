"""The billing bench's data: months of readings signed by real meter keys, once, kept on disk.

Signing 10,000 meters x 2,880 readings takes minutes on every core, so the months are
signed once (`bench.months.sign_months`, the meters' own keys in forked workers) into a
cache directory and loaded from there into each store, as many times as needed. The cache
holds the CA certificate, the meters' certificates and the signed-original rows, never a
private key. A cache made for at least as many meters with the same suite and month is
reused; anything else is signed again.

Rows go in through `storage.originals.load_originals` (signed originals only: billing and
the audit read nothing else). Every row carries the signature its meter made over exactly
those values; the audit verifies each one.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from meterseal.bench.months import sign_months
from meterseal.billing.completeness import Period
from meterseal.crypto import certs
from meterseal.crypto.at_rest import write_private_file
from meterseal.crypto.registry import MeterRecord, MeterRegistry
from meterseal.crypto.suites import CipherSuite, suite_named
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import provision
from meterseal.storage.originals import ORIGINAL_COLUMNS, load_originals
from meterseal.storage.store import Store

CACHE_FORMAT = 1
FLEET_FILE = "fleet.cbor"  # written last: its presence means the originals are complete
ORIGINALS_FILE = "originals.cbor"  # a CBOR sequence, one array of rows per meter
LOAD_METERS = 50  # meters per load transaction (144,000 rows of a 2,880-slot month)
ANONYMIZATION_KEY = b"bench anonymization key 32 bytes"  # pseudonyms are not stored here

Progress = Callable[[int], object]


@dataclass(frozen=True)
class SignedFleet:
    """Meters whose months are signed and cached: their certificates, the month, the cache."""

    directory: Path
    suite: CipherSuite
    period: Period
    signed_at: int  # when the meters signed (their certificates are valid from then)
    ca_certificate: x509.Certificate
    meters: tuple[tuple[str, bytes, str, str], ...]  # meter id, certificate DER, customer, region
    sign_seconds: float | None  # how long signing took (None: not recorded in the cache)
    cached: bool  # read from an earlier run's cache

    @property
    def intervals(self) -> int:
        """Readings per meter."""
        return self.period.slots

    def customers(self) -> list[tuple[str, str]]:
        """(customer id, meter id) in meter order: one meter per customer."""
        return [(customer, meter_id) for meter_id, _, customer, _ in self.meters]

    def records(self) -> list[MeterRecord]:
        """Registry records, each certificate checked against the CA again."""
        registry = MeterRegistry(self.ca_certificate)
        return [
            registry.register(x509.load_der_x509_certificate(der), self.suite, customer, region)
            for _, der, customer, region in self.meters
        ]


def month_before(now: dt.datetime, intervals: int) -> Period:
    """`intervals` 15-minute slots ending at the last UTC midnight before `now`."""
    end = int(now.timestamp()) // 86_400 * 86_400
    return Period(end - intervals * INTERVAL, end, INTERVAL)


def signed_fleet(
    directory: Path,
    suite: CipherSuite,
    meters: int,
    intervals: int,
    *,
    progress: Progress = lambda _n: None,
    workers: int | None = None,
) -> SignedFleet:
    """The cache in `directory` if it fits, else `meters` freshly signed months written there."""
    cached = _read_fleet(directory, meters)
    if cached is not None and cached.suite is suite and cached.intervals == intervals:
        return cached
    (directory / FLEET_FILE).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key, ca_cert = certs.create_ca("meterseal billing bench CA", now=now, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, meters, suite, now=now, prefix="BILL", workers=workers)
    period = month_before(now, intervals)
    with (directory / ORIGINALS_FILE).open("wb") as out:
        for chunk in sign_months(
            fleet,
            period.start,
            intervals,
            now=now,
            anonymization_key=ANONYMIZATION_KEY,
            workers=workers,
        ):
            for month in chunk:
                cbor2.dump([[getattr(r, c) for c in ORIGINAL_COLUMNS] for r in month], out)
            progress(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    rows = [
        (m.key.meter_id, m.certificate.public_bytes(Encoding.DER), m.customer_id, m.region_id)
        for m in fleet
    ]
    header = {
        "format": CACHE_FORMAT,
        "suite": suite.name,
        "period": [period.start, period.end, period.interval],
        "signed_at": int(now.timestamp()),
        "ca": ca_cert.public_bytes(Encoding.DER),
        "meters": rows,
    }
    header["sign_seconds"] = seconds = time.perf_counter() - started
    # Written whole or not at all (write_private_file renames atomically): it marks the cache done.
    write_private_file(directory / FLEET_FILE, cbor2.dumps(header))
    return SignedFleet(
        directory, suite, period, int(now.timestamp()), ca_cert, tuple(rows), seconds, False
    )


def _read_fleet(directory: Path, meters: int) -> SignedFleet | None:
    """The cached fleet's first `meters` meters, or None if there is no complete, big enough one."""
    try:
        header: dict[str, Any] = cbor2.loads((directory / FLEET_FILE).read_bytes())
    except (OSError, cbor2.CBORDecodeError):
        return None
    if header.get("format") != CACHE_FORMAT or len(header["meters"]) < meters:
        return None
    start, end, interval = header["period"]
    return SignedFleet(
        directory,
        suite_named(header["suite"]),
        Period(start, end, interval),
        header["signed_at"],
        x509.load_der_x509_certificate(header["ca"]),
        tuple(tuple(m) for m in header["meters"][:meters]),
        header.get("sign_seconds"),
        True,
    )


def _months(stream: BinaryIO, count: int) -> Iterator[list[list[Any]]]:
    decoder = cbor2.CBORDecoder(stream)
    for _ in range(count):
        yield decoder.decode()


def settle(store: Store) -> None:
    """Leave a bulk-loaded store as a month of ingest would: vacuumed and analyzed, WAL folded in.

    Right after the load, PostgreSQL's first read of each new page sets its hint bits (and
    writes the page again) and autovacuum is due on millions of rows; SQLite's next commit
    folds the load's WAL back into the file. Each would land in the first bills' time.
    """
    autocommit = store.engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("VACUUM (ANALYZE) signed_originals")
            connection.exec_driver_sql("CHECKPOINT")
        else:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def load_fleet(store: Store, fleet: SignedFleet, *, progress: Progress = lambda _n: None) -> int:
    """Register the fleet's meters in `store` and load their signed months; rows loaded."""
    now = dt.datetime.fromtimestamp(fleet.signed_at, dt.UTC)
    store.register_meters(fleet.records(), now=now)
    loaded = 0
    with (fleet.directory / ORIGINALS_FILE).open("rb") as stream:
        months = _months(stream, len(fleet.meters))
        for first in range(0, len(fleet.meters), LOAD_METERS):
            batch = [next(months) for _ in range(min(LOAD_METERS, len(fleet.meters) - first))]
            loaded += load_originals(store, (row for month in batch for row in month))
            progress(len(batch))
    return loaded
