"""`meterseal bill-doc` as an operator runs it, and the code a customer checks with verify-bill."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from pypdf import PdfReader

from meterseal.billing.document import AuditState
from tests.billing.conftest import PERIOD
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run
from tests.billing.test_imported import (
    CUSTOMER,
    DAY,
    METER,
    bill_args,
    delete_signed,
    import_rows,
)
from tests.command_line import invoke


def test_bill_doc_writes_the_pages_and_verify_bill_prints_their_code(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-tou")
    bill_id = f"{fleet[0].customer_id}/{PERIOD.start}-{PERIOD.end}"
    where = ("-d", str(deployment), "--store", store)
    page, pdf = tmp_path / "doc" / "bill.html", tmp_path / "doc" / "bill.pdf"

    before = run("bill-doc", bill_id, "--html", str(page), *where)
    assert AuditState.NOT_AUDITED.value in before
    assert not pdf.exists()
    run("audit", *where)
    out = run("bill-doc", bill_id, "--html", str(page), "--pdf", str(pdf), *where)
    assert f"{page} {pdf} verification code" in out  # the paths, then the code
    found = re.search(r"verification code ([A-Z2-7]{4}(?:-[A-Z2-7]{4}){4})", out)
    assert found is not None
    code = found.group(1)
    assert AuditState.COUNTERSIGNED.value in out
    text = " ".join(p.extract_text() for p in PdfReader(pdf).pages)
    for document in (text, page.read_text()):
        assert code in document
        assert "Standing in force" in " ".join(re.sub("<[^>]+>", " ", document).split())
        assert bill_id in document
        assert AuditState.COUNTERSIGNED.value in document

    run("export-bill", bill_id, "--out", str(tmp_path / "out"), "--store", store)
    bill_file = tmp_path / "out" / f"{bill_id.replace('/', '_')}.bill.cose"
    verified = run(
        "verify-bill", str(bill_file), "--ca", str(deployment / "ca.cert.pem"),
        "--billing-key", str(deployment / "billing.pub.pem"),
        "--authority-key", str(deployment / "metrology.pub.pem"),
    )  # fmt: skip
    assert verified.startswith("verified")
    assert f"verification code {code}" in verified

    # A correction: the bill's page says it is superseded, the credit note's what it cancels.
    run("rebill", bill_id, "--reason", "meter constant fixed", *where)
    credit = tmp_path / "doc" / "credit.pdf"
    run("bill-doc", bill_id, "--pdf", str(pdf), *where)
    run("bill-doc", f"{bill_id}/credit-1", "--pdf", str(credit), *where)
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(pdf).pages).split())
    assert f"Standing superseded by {bill_id}/rebill-1" in text
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(credit).pages).split())
    assert f"Credit note {bill_id}/credit-1" in text
    assert f"Cancels {bill_id} Reason meter constant fixed Standing cancels {bill_id}" in text
    assert "Consumption" not in text  # a credit note has none of its own


def test_bill_doc_refuses_in_one_line(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    where = ["-d", str(deployment), "--store", store]
    nothing = invoke(["bill-doc", "CUST-1/0-900", *where])
    assert nothing.exit_code == 2
    assert "give --html FILE, --pdf FILE or both" in nothing.output
    unknown = invoke(["bill-doc", "CUST-1/0-900", "--pdf", str(tmp_path / "x.pdf"), *where])
    assert unknown.exit_code != 0
    assert "no bill 'CUST-1/0-900'" in unknown.output
    assert not (tmp_path / "x.pdf").exists()


def _pdf_text(path: Path) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(path).pages).split())


def test_bills_of_imported_readings_and_of_tenants_render(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    where = ("-d", str(deployment), "--store", store)
    delete_signed(store, range(10, 20))
    import_rows(tmp_path, deployment, store, range(10, 20), 7)  # UNSIGNED, 7 Wh each
    run(*bill_args(deployment, store, "--allow-unsigned"))
    pdf = tmp_path / "imported.pdf"
    run("bill-doc", f"{CUSTOMER}/{PERIOD.start}-{PERIOD.end}", "--pdf", str(pdf), *where)
    text = _pdf_text(pdf)
    assert "Unsigned readings 10 imported (0.070 kWh)" in text
    assert "10 readings (0.070 kWh) are UNSIGNED imports" in text

    noon = PERIOD.start + 43_200
    tenants = tmp_path / "t.csv"
    tenants.write_text(
        f"customer,meter,from,to\nALICE,{METER},{DAY},"
        f"{dt.datetime.fromtimestamp(noon, dt.UTC).isoformat()}\n"
    )
    run("customers", "import", str(tenants), "--store", store)
    run(*bill_args(deployment, store, "--customer", "ALICE", "--allow-unsigned"))
    pdf = tmp_path / "alice.pdf"
    run("bill-doc", f"ALICE/{PERIOD.start}-{PERIOD.end}", "--pdf", str(pdf), *where)
    text = _pdf_text(pdf)
    assert f"Meter {METER} from {DAY} 00:00 UTC to {DAY} 12:00 UTC" in text
    assert "48 of 48 intervals received" in text
