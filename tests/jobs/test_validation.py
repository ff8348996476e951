"""The validation job: the same reports as `meterseal audit`'s auditor, written once."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from meterseal.crypto.countersign import verify_countersignature
from meterseal.crypto.keys import kid_of, public_bytes, write_private_key
from meterseal.jobs.engine import Engine
from meterseal.jobs.monitor import Monitor
from meterseal.jobs.runner import chunked, run_chunks
from meterseal.jobs.validation import AuditSpec, audit_chunk, period_bills, write_reports
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.conftest import Month
from tests.conftest import NOW


def spec_for(month: Month, where: Path) -> AuditSpec:
    """The month's key files written out, as a deployment holds them."""
    write_private_key(where / "metrology.key.pem", month.authority_key)
    (where / "ca.cert.pem").write_bytes(month.ca_cert.public_bytes(serialization.Encoding.PEM))
    (where / "billing.pub.pem").write_bytes(
        month.billing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return AuditSpec(
        month.url,
        str(where / "metrology.key.pem"),
        str(where / "ca.cert.pem"),
        str(where / "billing.pub.pem"),
        now=NOW.timestamp(),
    )


def bill_all(month: Month) -> list[str]:
    """Bill every customer of the month; the bill ids."""
    for customer, meters in month.bills.customers().items():
        month.service().bill_customer(customer, meters, month.period, month.tariff)
    return period_bills(month.bills, month.period)


def test_the_job_writes_what_the_single_process_audit_writes(
    month: Month, engine: Engine, tmp_path: Path
) -> None:
    bills = bill_all(month)
    counter = (month.period.start + 10 * 900) // 900  # the operator alters a billed reading
    month.execute(
        "UPDATE signed_originals SET energy_wh = energy_wh + 500 WHERE meter_id = :m AND "
        "counter = :c",
        m=month.fleet[0].key.meter_id,
        c=counter,
    )
    assert len(bills) == 2
    alone = BillStore(Store.open(f"sqlite:///{tmp_path / 'alone.db'}"))
    auditor = month.auditor()
    auditor.reports = alone
    for bill_id in bills:
        auditor.audit(bill_id)

    spread = BillStore(Store.open(f"sqlite:///{tmp_path / 'spread.db'}"))
    writes: list[int] = []

    def keep(index: int, audited: list) -> None:  # type: ignore[type-arg]
        writes.append(index)
        write_reports(spread, audited)

    task = functools.partial(audit_chunk, spec_for(month, tmp_path))
    chunks = chunked(bills, 1)
    clock = itertools.count().__next__
    run_chunks(engine, task, chunks, keep, monitor=Monitor(2, 1e9, clock=clock), key="audit")
    assert sorted(writes) == [0, 1]

    def kept(store: BillStore) -> dict[str, tuple[int, bool, dict]]:  # type: ignore[type-arg]
        return {r.bill_id: (r.audited_at, r.clean, r.report) for r in store.reports()}

    assert kept(spread) == kept(alone)
    assert sorted(r.clean for r in spread.reports()) == [False, True]
    public = month.authority_key.public_key()
    for report in spread.reports():
        if report.countersigned_bill is not None:
            verify_countersignature(report.countersigned_bill, public, kid_of(public_bytes(public)))
    assert any(r.countersigned_bill for r in spread.reports())

    # Retried (everything finished already): nothing more is written.
    run_chunks(
        engine,
        task,
        chunks,
        keep,
        monitor=Monitor(2, 1e9, clock=clock),
        key="again",
        finished={0, 1},
    )
    assert sorted(writes) == [0, 1]
    assert len(spread.reports()) == 2


def test_a_chunk_audited_twice_gives_the_same_reports(month: Month, tmp_path: Path) -> None:
    bills = bill_all(month)
    spec = spec_for(month, tmp_path)
    first, second = audit_chunk(spec, bills), audit_chunk(spec, bills)
    assert [(a.bill_id, a.report) for a in first] == [(a.bill_id, a.report) for a in second]
