"""`meterseal import csv` as an operator runs it, on the example of docs/import-export.md."""

from __future__ import annotations

import re
from pathlib import Path

from tests.billing.on_disk import run

DOCS = Path(__file__).resolve().parents[2] / "docs" / "import-export.md"


def doc_block(language: str, index: int = 0) -> str:
    """The index-th fenced block of `language` in docs/import-export.md."""
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)[index]


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
