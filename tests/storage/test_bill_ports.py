"""The bill store implements every repository billing declares (billing.ports), on both stores."""

from __future__ import annotations

import inspect

import pytest

from meterseal.billing.ports import (
    AuditSource,
    BillArchive,
    BillLedger,
    ReportSink,
    StoredReport,
)
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore

PORTS = (BillLedger, AuditSource, ReportSink, BillArchive)


def _members(port: type) -> list[str]:
    return [name for name in vars(port) if not name.startswith("_")]


@pytest.mark.parametrize("port", PORTS, ids=lambda p: p.__name__)
def test_the_bill_store_has_each_ports_methods_with_its_parameters(port: type) -> None:
    assert _members(port)
    for name in _members(port):
        declared = inspect.signature(getattr(port, name))
        implemented = inspect.signature(getattr(BillStore, name))
        assert list(implemented.parameters) == list(declared.parameters), name
        assert getattr(BillStore, name) is not getattr(port, name), f"{name} is not implemented"


def test_the_bill_store_is_each_port(store: Store) -> None:
    # mypy checks these assignments (and BillStore's explicit bases) against the Protocols.
    bills = BillStore(store)
    ledger: BillLedger = bills
    source: AuditSource = bills
    sink: ReportSink = bills
    archive: BillArchive = bills
    assert ledger.log_leaves() == []
    assert archive.log_head() is None
    assert source.customer_meters("nobody") == []
    report_id = sink.record_report("C/1-2", 5, {"clean": True}, None)
    assert archive.report(report_id) == StoredReport(
        report_id, "C/1-2", 5, False, {"clean": True}, None
    )
    assert archive.report(report_id + 1) is None
