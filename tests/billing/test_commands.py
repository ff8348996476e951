"""The billing commands as an operator, the authority and a customer run them."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.conftest import PERIOD
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run


def test_bill_audit_export_and_verify_from_the_command_line(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 2)
    assert "published" in run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    assert "example-tou" in run("tariffs", "list", "--store", store)
    billed = bill_on_disk(deployment, store, "example-tou")
    assert "96/96" in billed
    assert "EUR" in billed
    audited = run("audit", "-d", str(deployment), "--store", store)
    assert "2 of 2 bills countersigned" in audited

    meter = fleet[0].key.meter_id
    bill_id = f"{fleet[0].customer_id}/{PERIOD.start}-{PERIOD.end}"
    counter = PERIOD.start // 900 + 7
    run(
        "export-bill",
        bill_id,
        "--out",
        str(tmp_path / "out"),
        "--reading",
        f"{meter}:{counter}",
        "--store",
        store,
    )
    bad = run("export-bill", bill_id, "--reading", f"{meter}:seven", "--store", store, code=2)
    assert "METER:COUNTER" in bad
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
    verified = run("verify-bill", str(bill_file), "--reading", str(proof), *keys)
    assert f"meter {meter} counter {counter}" in verified
    assert "packet 8 of 96" in verified
    # Without key options: the configured deployment's public material (as init writes it).
    config = tmp_path / "meterseal.toml"
    config.write_text(f'[deployment]\ndir = "{deployment.name}"\n[store]\nurl = "{store}"\n')
    configured = ["--config", str(config), "verify-bill", str(bill_file), "--reading", str(proof)]
    assert f"meter {meter} counter {counter}" in run(*configured)
    assert "verified" in run("verify-bill", str(bill_file), "-d", str(deployment))
    refused = run(*configured, "--ca", str(bill_file), code=1)  # a named file still wins
    assert "NOT VERIFIED" in refused

    # A customer holding the billing-signed bill only (no countersignature) is told so.
    with Store.open(store) as db:
        stored = BillStore(db).bill(bill_id)
    assert stored is not None
    bill_file.write_bytes(stored.signed_bill)
    refused = run("verify-bill", str(bill_file), "--reading", str(proof), *keys, code=1)
    assert "NOT VERIFIED" in refused
    assert "countersignature" in refused


def test_audit_exits_1_and_names_a_tampered_reading(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-flat@1")
    with Store.open(store) as db, db.transaction() as connection:
        connection.execute(
            sa.text("UPDATE signed_originals SET energy_wh = 1 WHERE counter = :c"),
            {"c": PERIOD.start // 900 + 3},
        )
    found = run("audit", "-d", str(deployment), "--store", store, code=1)
    assert "discrepancies" in found
    assert "altered" in found
    assert "energy_wh" in found


def test_verify_bill_takes_the_public_keys_of_the_configured_deployment(tmp_path: Path) -> None:
    # An operator in a deployment's directory (its meterseal.toml names it) checks a bill
    # without naming each public key file; a customer still names them (--ca …).
    from tests.billing.on_disk import exported_bill

    exported = exported_bill(tmp_path)
    config = tmp_path / "meterseal.toml"
    config.write_text(
        f'[deployment]\ndir = "{exported.deployment.name}"\n[store]\nurl = "sqlite:///store.db"\n'
    )
    args = ["verify-bill", str(exported.bill_file), "--reading", str(exported.proof)]
    verified = run("--config", str(config), *args)
    assert f"meter {exported.meter_id} counter {exported.counter}" in verified
    assert "in the bill log: in force" in verified  # the configured store
    assert f"meter {exported.meter_id}" in run(*args, "-d", str(exported.deployment))
