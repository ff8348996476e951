"""docs/import-export.md's examples, run as the page shows them, on its real household month."""

from __future__ import annotations

import re
from pathlib import Path

from tests.billing.on_disk import TARIFFS, run
from tests.exchange.test_cli import doc_block, on_disk

DOCS = Path(__file__).resolve().parents[2] / "docs" / "import-export.md"


def shown_lines(command: str) -> list[str]:
    """The output lines the page shows under `$ meterseal COMMAND …` (up to the next `$`)."""
    text = DOCS.read_text()
    at = text.index(f"$ meterseal {command}")
    block = text[at:].split("```", 1)[0].splitlines()[1:]
    lines = []
    for line in block:
        if line.startswith("$"):
            break
        if line.strip() and line.strip() != "...":
            lines.append(" ".join(line.split()))
    return lines


def test_the_pages_examples_from_sample_to_espi(tmp_path: Path) -> None:
    deployment, store = on_disk(tmp_path, 3)
    common = ["-d", str(deployment), "--store", store]
    sample = tmp_path / "household-2010-10.csv"
    written = run("import", "sample", "--meter", "MTR-000001", "--out", str(sample))
    assert shown_lines("import sample")[0].replace("household-2010-10.csv", str(sample)) in written
    imported = run("import", "csv", str(sample), "--tz", "Europe/Paris", *common)
    for line in shown_lines("import csv household"):
        assert line in imported

    tenants = tmp_path / "tenants.csv"
    tenants.write_text(doc_block("csv", 1))
    assigned = run("customers", "import", str(tenants), "--store", store)
    assert shown_lines("customers import")[0] in assigned
    assert shown_lines("customers show")[0] in run("customers", "show", "BOB", "--store", store)

    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    billed = run("bill", "--tariff", "example-tou", "--from", "2010-10-01", "--days", "30",
                 "--allow-unsigned", "--customer", "CUST-MTR-000001", *common)  # fmt: skip
    for line in shown_lines("bill --tariff"):
        assert line in billed
    assert "1 of 1 bills countersigned" in run("audit", *common)
    out = tmp_path / "c.xml"
    exported = run("export", "espi", "--customer", "CUST-MTR-000001", "--from", "2010-10-01",
                   "--to", "2010-10-30", "--out", str(out), "--store", store)  # fmt: skip
    assert re.sub(r"^c\.xml", str(out), shown_lines("export espi")[0]) in exported
