"""The data validation job: the metrology authority's audit of every bill of a period.

Each chunk of bill ids is one task: the worker opens the store read-only, reads the
authority's key files itself (the task carries their paths, never the keys) and runs the
same `Auditor` that `meterseal audit` runs, into a sink that keeps the reports in memory.
Each worker thread keeps its auditor for the job (store, keys, meter registry) across chunks.
The runner writes each chunk's reports once, through the reports store's `record_report`,
as `meterseal audit` writes them; a retried task writes nothing, so retries change nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.billing.auditor import Auditor
from meterseal.billing.bill import parse_signed_bill
from meterseal.billing.completeness import Period
from meterseal.crypto.keys import read_private_key
from meterseal.errors import ConfigurationError
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore


@dataclass(frozen=True, slots=True)
class AuditSpec:
    """What a worker needs to audit: the store and the paths of the authority's key files."""

    store: str  # read-only access is all a worker gets
    authority_key: str
    ca_certificate: str
    billing_key: str
    passphrase_env: str = "MS_PASSPHRASE"  # noqa: S105 - a variable name
    now: float | None = None  # the reports' audit time; None: each audit's own clock
    cas: str | None = None  # set: the authority's key is the CAS's, released to attested workers


@dataclass(frozen=True, slots=True)
class Audited:
    """One bill's audit as `Auditor.audit` hands it to its report sink."""

    bill_id: str
    audited_at: int
    report: dict[str, Any]
    countersigned: bytes | None


class _Kept:
    """A report sink that keeps the reports for the runner to write (no side effect)."""

    def __init__(self) -> None:
        self.audited: list[Audited] = []

    def record_report(
        self, bill_id: str, audited_at: int, report: dict[str, Any], countersigned: bytes | None
    ) -> int:
        """Keep one report; its position stands in for the id the store will give it."""
        self.audited.append(Audited(bill_id, audited_at, report, countersigned))
        return len(self.audited)


def _billing_key(path: Path) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"{path} is not a P-256 public key")
    return key


class _Auditors(threading.local):
    """Each worker thread's auditor of its current job (the meter registry is built once)."""

    spec: AuditSpec | None = None
    auditor: Auditor | None = None
    kept: _Kept | None = None
    store: Store | None = None
    generation: int = -1  # `release_auditors` closed this thread's store if behind


_AUDITORS = _Auditors()
# The store each worker thread's auditor holds, by thread: a worker's threads outlive the job
# (Dask keeps its executor), so a job's end closes them here, or each would keep its
# PostgreSQL connection open until the worker exits.
_OPEN: dict[int, Store] = {}
_OPEN_LOCK = threading.Lock()
_GENERATION = [0]


def release_auditors() -> int:
    """Close the stores this process's auditors hold (`client.run` at a job's end); how many.

    A thread's next chunk opens its store again.
    """
    with _OPEN_LOCK:
        stores = list(_OPEN.values())
        _OPEN.clear()
        _GENERATION[0] += 1
    for store in stores:
        store.close()
    return len(stores)


def open_auditor_stores() -> int:
    """How many auditor stores this process holds open."""
    with _OPEN_LOCK:
        return len(_OPEN)


def _auditor(spec: AuditSpec) -> tuple[Auditor, _Kept]:
    """This thread's auditor for `spec`, made on its first chunk (store, keys, registry)."""
    with _OPEN_LOCK:
        current = _AUDITORS.generation == _GENERATION[0]
        if not current or _AUDITORS.spec != spec:
            if current and _AUDITORS.store is not None:
                _AUDITORS.store.close()  # this thread's store of an earlier job
            _OPEN.pop(threading.get_ident(), None)
            _AUDITORS.auditor = None
    if _AUDITORS.auditor is None or _AUDITORS.kept is None:
        value = os.environ.get(spec.passphrase_env)
        password = value.encode() if value else None
        if spec.cas is not None:  # the worker attested (jobs.attest): the CAS's copy, no file
            from meterseal.jobs.attest import AUTHORITY_KEY, attested_secret

            pem = attested_secret(AUTHORITY_KEY)
            # Plain whatever the files are: `cas secrets import` unwraps an encrypted key file.
            key: object = serialization.load_pem_private_key(pem, None)
        else:
            key = read_private_key(Path(spec.authority_key), password)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"{spec.authority_key} is not the authority's P-256 key")
        ca = x509.load_pem_x509_certificate(Path(spec.ca_certificate).read_bytes())
        now = spec.now
        kept = _Kept()
        store = _AUDITORS.store = Store.open_read_only(spec.store)
        with _OPEN_LOCK:
            _OPEN[threading.get_ident()] = store
            _AUDITORS.generation = _GENERATION[0]
        auditor = Auditor(
            BillStore(store),
            kept,
            key,
            ca,
            _billing_key(Path(spec.billing_key)),
            clock=time.time if now is None else lambda: now,
        )
        _AUDITORS.spec, _AUDITORS.auditor, _AUDITORS.kept = spec, auditor, kept
    return _AUDITORS.auditor, _AUDITORS.kept


def audit_chunk(spec: AuditSpec, bill_ids: Sequence[str]) -> list[Audited]:
    """Audit `bill_ids` as `meterseal audit` does; the reports, unwritten (a Dask task)."""
    auditor, kept = _auditor(spec)
    kept.audited = []
    for bill_id in bill_ids:
        auditor.audit(bill_id)
    return kept.audited


def period_bills(bills: BillStore, period: Period | None = None) -> list[str]:
    """The ids of the bills kept for `period` (every bill without one), in log order."""
    start, end = (period.start, period.end) if period else (None, None)
    return [
        parse_signed_bill(signed)[0].bill_id for _, signed in bills.signed_bills(None, start, end)
    ]


def write_reports(reports: BillStore, audited: list[Audited]) -> list[int]:
    """Record a chunk's reports as `meterseal audit` does; their ids."""
    return [
        reports.record_report(a.bill_id, a.audited_at, a.report, a.countersigned) for a in audited
    ]
