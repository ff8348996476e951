"""The billing commands as an operator, the authority and a customer run them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from meterseal.bench.months import store_months
from meterseal.meter.provisioning import ProvisionedMeter, load_fleet
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.conftest import ANONYMIZATION_KEY, PERIOD
from tests.command_line import invoke

TARIFFS = Path(__file__).resolve().parents[2] / "src" / "meterseal" / "billing" / "tariffs"


def _text(output: str) -> str:
    return " ".join(output.split())


def _run(*args: str, code: int = 0) -> str:
    result = invoke(list(args))
    assert result.exit_code == code, result.output
    return _text(result.output)


def _month_on_disk(tmp_path: Path, meters: int) -> tuple[Path, str, list[ProvisionedMeter]]:
    """A deployment, `meters` registered Ed25519 meters and a day of their signed readings."""
    deployment = tmp_path / "dep"
    store = f"sqlite:///{tmp_path / 'store.db'}"
    fleet_file = deployment / "fleet-ed25519.cbor"
    _run("keys", "init", str(deployment))
    _run("meters", "provision", str(meters), "--deployment", str(deployment), "--suite", "ed25519")
    _run("meters", "register", str(fleet_file), "-d", str(deployment), "--store", store)
    fleet = load_fleet(fleet_file)
    with Store.open(store) as db:
        store_months(
            db,
            fleet,
            PERIOD.start,
            PERIOD.slots,
            now=dt.datetime.now(dt.UTC),
            anonymization_key=ANONYMIZATION_KEY,
            workers=1,
        )
    return deployment, store, fleet


def _bill(deployment: Path, store: str, tariff: str) -> str:
    first = dt.datetime.fromtimestamp(PERIOD.start, dt.UTC).date().isoformat()
    return _run(
        "bill", "--tariff", tariff, "--from", first, "--days", "1",
        "-d", str(deployment), "--store", store,
    )  # fmt: skip


def test_bill_audit_export_and_verify_from_the_command_line(tmp_path: Path) -> None:
    deployment, store, fleet = _month_on_disk(tmp_path, 2)
    assert "published" in _run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    assert "example-tou" in _run("tariffs", "list", "--store", store)
    billed = _bill(deployment, store, "example-tou")
    assert "96/96" in billed
    assert "EUR" in billed
    audited = _run("audit", "-d", str(deployment), "--store", store)
    assert audited.count("countersigned") == 2

    meter = fleet[0].key.meter_id
    bill_id = f"{fleet[0].customer_id}/{PERIOD.start}-{PERIOD.end}"
    counter = PERIOD.start // 900 + 7
    _run(
        "export-bill",
        bill_id,
        "--out",
        str(tmp_path / "out"),
        "--reading",
        f"{meter}:{counter}",
        "--store",
        store,
    )
    stem = bill_id.replace("/", "_")
    bill_file = tmp_path / "out" / f"{stem}.bill.cose"
    proof = tmp_path / "out" / f"{stem}.{meter}.{counter}.proof.cbor"
    keys = [
        "--ca",
        str(deployment / "ca.cert.pem"),
        "--billing-key",
        str(deployment / "billing.pub.pem"),
        "--authority-key",
        str(deployment / "metrology.pub.pem"),
    ]
    verified = _run("verify-bill", str(bill_file), "--reading", str(proof), *keys)
    assert f"meter {meter} counter {counter}" in verified
    assert "packet 8 of 96" in verified

    # A customer holding the billing-signed bill only (no countersignature) is told so.
    with Store.open(store) as db:
        stored = BillStore(db).bill(bill_id)
    assert stored is not None
    bill_file.write_bytes(stored.signed_bill)
    refused = _run("verify-bill", str(bill_file), "--reading", str(proof), *keys, code=1)
    assert "NOT VERIFIED" in refused
    assert "countersignature" in refused


def test_audit_exits_1_and_names_a_tampered_reading(tmp_path: Path) -> None:
    deployment, store, _ = _month_on_disk(tmp_path, 1)
    _run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    _bill(deployment, store, "example-flat@1")
    with Store.open(store) as db, db.transaction() as connection:
        connection.execute(
            sa.text("UPDATE signed_originals SET energy_wh = 1 WHERE counter = :c"),
            {"c": PERIOD.start // 900 + 3},
        )
    found = _run("audit", "-d", str(deployment), "--store", store, code=1)
    assert "discrepancies" in found
    assert "altered" in found
    assert "energy_wh" in found
