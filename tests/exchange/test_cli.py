"""`meterseal import csv` as an operator runs it, on the example of docs/import-export.md."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from tests.billing.on_disk import run

DOCS = Path(__file__).resolve().parents[2] / "docs" / "import-export.md"


def doc_block(language: str, index: int = 0) -> str:
    """The index-th fenced block of `language` in docs/import-export.md."""
    blocks: list[str] = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    return blocks[index]


def on_disk(tmp_path: Path, meters: int = 2) -> tuple[Path, str]:
    deployment = tmp_path / "dep"
    store = f"sqlite:///{tmp_path / 'store.db'}"
    run("keys", "init", str(deployment))
    run("meters", "provision", str(meters), "-d", str(deployment), "--suite", "ed25519")
    run("meters", "register", str(deployment / "fleet-ed25519.cbor"), "-d", str(deployment),
        "--store", store)  # fmt: skip
    return deployment, store


def test_the_documented_csv_imports_as_the_page_says_and_again_as_duplicates(
    tmp_path: Path,
) -> None:
    deployment, store = on_disk(tmp_path)
    (tmp_path / "readings.csv").write_text(doc_block("csv"))
    args = ["import", "csv", str(tmp_path / "readings.csv"), "-d", str(deployment),
            "--store", store]  # fmt: skip
    shown = run(*args)
    expected = doc_block("", 0).splitlines()[1:]  # the page's sample output
    for line in expected:
        assert " ".join(line.split()) in shown
    again = run(*args)
    assert "0 stored UNSIGNED, 3 already stored, 0 rejected" in again


def test_refused_rows_exit_1_and_go_to_the_errors_file(tmp_path: Path) -> None:
    deployment, store = on_disk(tmp_path, 1)
    data = tmp_path / "r.csv"
    data.write_text(
        "meter,start,duration,kwh\n"
        "MTR-000001,2026-10-01 00:00:00,900,0.1\n"
        "MTR-000001,2026-10-01T00:15:00Z,900,0.1\n"
    )
    errors = tmp_path / "bad.csv"
    shown = run("import", "csv", str(data), "-d", str(deployment), "--store", store,
                "--errors", str(errors), code=1)  # fmt: skip
    assert "1 stored UNSIGNED" in shown
    assert "1 rejected" in shown
    assert "line 2: time '2026-10-01 00:00:00' has no UTC offset" in shown
    assert errors.read_text().splitlines() == [
        "meter,start,duration,kwh,line,error",
        "MTR-000001,2026-10-01 00:00:00,900,0.1,2,"
        "\"time '2026-10-01 00:00:00' has no UTC offset: add one, or give --tz\"",
    ]
    fixed = run("import", "csv", str(data), "--tz", "Europe/Paris", "-d", str(deployment),
                "--store", store)  # fmt: skip
    assert "1 stored UNSIGNED, 1 already stored, 0 rejected" in fixed


def test_a_file_without_the_needed_columns_is_one_line_and_exit_2(tmp_path: Path) -> None:
    deployment, store = on_disk(tmp_path, 1)
    data = tmp_path / "r.csv"
    data.write_text("meter,when,kwh\nM,1,1\n")
    shown = run("import", "csv", str(data), "-d", str(deployment), "--store", store, code=2)
    assert "unknown column 'when'" in shown


SAMPLE = Path(__file__).resolve().parents[1] / "vectors" / "espi" / "test_usage_data_01.xml"


def test_a_green_button_file_imports_for_the_meter_named_and_exports_back(tmp_path: Path) -> None:
    deployment, store = on_disk(tmp_path, 1)
    args = ["-d", str(deployment), "--store", store]
    refused = run("import", "espi", str(SAMPLE), *args, "--errors", str(tmp_path / "e.csv"),
                  code=1)  # fmt: skip
    assert "usage points 5446AF3F (Front Electric Meter)" in refused
    assert "96 rejected" in refused
    assert "mapped to no meter" in (tmp_path / "e.csv").read_text()
    bad = run("import", "espi", str(SAMPLE), "--meter", "NOPE=MTR-000001", *args, code=2)
    assert "no usage point 'NOPE'" in bad
    shown = run("import", "espi", str(SAMPLE), "--meter", "MTR-000001", *args)
    assert "96 rows: 0 stored signed, 96 stored UNSIGNED, 0 already stored, 0 rejected" in shown
    out = tmp_path / "c.xml"
    exported = run("export", "espi", "--customer", "CUST-MTR-000001", "--from", "2012-03-01",
                   "--to", "2012-03-02", "--store", store, "--out", str(out))  # fmt: skip
    assert f"{out}: 1 meters, 0 meter-signed readings, 96 UNSIGNED readings, 0 bills" in exported
    again = run("import", "espi", str(out), "--meter", "MTR-000001=MTR-000001", *args)
    assert "0 stored UNSIGNED, 96 already stored, 0 rejected" in again


def test_export_espi_carries_signed_readings_and_the_bill(tmp_path: Path) -> None:
    from meterseal.exchange.espi import parse_espi
    from meterseal.exchange.espi_write import usage_summaries
    from tests.billing.conftest import PERIOD
    from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk

    deployment, store, fleet = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-flat@1")
    customer = fleet[0].customer_id
    day = dt.datetime.fromtimestamp(PERIOD.start, dt.UTC).date().isoformat()
    out = tmp_path / "c.xml"
    shown = run("export", "espi", "--customer", customer, "--from", day, "--to", day,
                "--store", store, "--out", str(out))  # fmt: skip
    assert "96 meter-signed readings, 0 UNSIGNED readings, 1 bills" in shown
    data = out.read_bytes()
    assert len(parse_espi(data).readings) == 96
    (summary,) = usage_summaries(data)
    assert summary.title.startswith(f"bill {customer}/{PERIOD.start}-{PERIOD.end}")
    assert summary.bill_last_period > 0
    missing = run("export", "espi", "--customer", "NOBODY", "--from", day, "--to", day,
                  "--store", store, code=2)  # fmt: skip
    assert "customer 'NOBODY' has no meters" in missing


def test_customers_import_and_show(tmp_path: Path) -> None:
    _, store = on_disk(tmp_path, 2)
    data = tmp_path / "a.csv"
    data.write_text(
        "customer,meter,from,to\n"
        "ALICE,MTR-000001,2026-10-01,2026-10-16\n"
        "BOB,MTR-000001,2026-10-16,\n"
        "BOB,MTR-000002,2026-10-01,\n"
        "EVE,MTR-000001,2026-10-10,\n"
    )
    shown = run("customers", "import", str(data), "--store", store, code=1)
    assert "3 assignments stored, 0 unchanged, 1 rejected" in shown
    assert "line 5: meter MTR-000001 is ALICE's from 2026-10-01 to 2026-10-16" in shown
    assert "meterseal customers show BOB" in shown
    bob = run("customers", "show", "BOB", "--store", store)
    assert "customer BOB: 2 meters" in bob
    assert "MTR-000001 │ 2026-10-16 │ -" in bob
    assert "MTR-000002 │ 2026-10-01 │ -" in bob
    unknown = run("customers", "show", "NOBODY", "--store", store, code=2)
    assert "customer 'NOBODY' has no meters" in unknown


def test_the_household_sample_imports_a_whole_utc_month_with_its_zone(tmp_path: Path) -> None:
    deployment, store = on_disk(tmp_path, 1)
    sample = tmp_path / "h.csv"
    written = run("import", "sample", "--out", str(sample))
    assert "2880 quarter-hours" in written
    assert "CC BY 4.0" in written
    args = ["import", "csv", str(sample), "-d", str(deployment), "--store", store]
    refused = run(*args, code=1)  # local times: the zone must be given
    assert "2880 rejected" in refused
    assert "has no UTC offset: add one, or give --tz" in refused
    shown = run(*args, "--tz", "Europe/Paris")
    assert "2880 rows: 0 stored signed, 2880 stored UNSIGNED" in shown
    assert "readings from 2010-10-01 00:00 to 2010-10-30 23:45 UTC" in shown
