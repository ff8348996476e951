"""README's "Python API" block runs as written, where the README's commands have run.

The directory it runs in holds what `keys init`, `meters provision`, `bill`, `audit` and
`export-bill` leave: a deployment, a fleet file, and a countersigned bill with one reading's
proof (billed and audited by the real billing service and auditor on SQLite, exported by the
real `export-bill`). The block runs in a fresh interpreter, as a reader would run it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from meterseal import api
from meterseal.bench.months import store_months
from meterseal.billing.auditor import Auditor
from meterseal.billing.completeness import Period
from meterseal.billing.proofs import ReadingProofError
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto.suites import P256
from meterseal.deployment import init_deployment
from meterseal.errors import InvalidPacket, RejectReason
from meterseal.meter.provisioning import fleet_records, provision, save_fleet
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.command_line import invoke

ROOT = Path(__file__).parents[1]


def readme_block() -> str:
    """The one ```python block of README.md."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "README.md should hold exactly one python block"
    return str(blocks[0])


@pytest.fixture(scope="module")
def operator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`my-utility` after the README's commands: keys, a fleet, an audited bill exported."""
    root = tmp_path_factory.mktemp("readme") / "my-utility"
    now = dt.datetime.now(dt.UTC)
    deployment_dir = root  # `meterseal init my-utility` makes the deployment the directory
    deployment = init_deployment(deployment_dir, now=now)
    meters = provision(deployment.ca_key, deployment.ca_cert, 1, P256, now=now, workers=1)
    save_fleet(deployment_dir / "fleet-p256.cbor", meters)
    url = f"sqlite:///{root / 'meterseal.db'}"
    period = Period.days(now.date() - dt.timedelta(days=2), 1)
    meter_id, customer = meters[0].key.meter_id, meters[0].customer_id
    with Store.open(url) as store:
        store.register_meters(fleet_records(deployment.ca_cert, meters), now=now)
        store_months(
            store,
            meters,
            period.start,
            period.slots,
            now=now,
            anonymization_key=deployment.anonymization_key,
            workers=1,
        )
        bills = BillStore(store)
        tariff = builtin_tariffs().latest("example-tou")
        bills.add_tariff(tariff, now=now)
        bill_id = (
            BillingService(bills, deployment.billing_key)
            .bill_customer(customer, [meter_id], period, tariff)
            .bill.bill_id
        )
        with Store.open_read_only(url) as source:
            auditor = Auditor(
                BillStore(source),
                bills,
                deployment.metrology_key,
                deployment.ca_cert,
                deployment.billing_key.public_key(),
            )
            assert auditor.audit(bill_id).countersigned is not None
        counter = bills.packets([meter_id], period.start, period.end)[0].counter
    exported = invoke(
        [
            "export-bill",
            bill_id,
            "--reading",
            f"{meter_id}:{counter}",
            "--store",
            url,
            "--out",
            str(root / "for-customer"),
        ]
    )
    assert exported.exit_code == 0, exported.output
    assert "not yet audited" not in exported.output
    return root


def test_the_readme_python_block_runs_as_written(operator_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("MS_PASSPHRASE", None)
    result = subprocess.run(
        [sys.executable, "-c", readme_block()],
        cwd=operator_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"MTR-000001 \(customer \S+\): 212 Wh", lines[0]), lines
    assert re.fullmatch(r"bill \S+/\d+-\d+: \d+(\.\d+)? \w+, reading \d+ on it", lines[1]), lines


def test_the_api_refuses_what_it_must(operator_dir: Path) -> None:
    """A packet for other keys, a forged signature, an altered bill: each one refusal."""
    keys = api.load_deployment(operator_dir)
    meters = api.load_fleet(operator_dir / "fleet-p256.cbor")
    now = dt.datetime.now(dt.UTC)
    reading = api.Reading(meters[0].key.meter_id, 7, int(now.timestamp()), 900, 5)
    sealed = api.seal_reading(reading, meters[0], keys.headend.public(), now=now)
    registry = api.meter_registry(keys.ca_cert, meters)
    assert api.open_reading(sealed, keys.headend, registry, now=now).reading == reading
    middle = len(sealed) // 2
    altered = sealed[:middle] + bytes([sealed[middle] ^ 1]) + sealed[middle + 1 :]
    with pytest.raises(InvalidPacket) as refused:
        api.open_reading(altered, keys.headend, registry, now=now)
    assert refused.value.reason in {RejectReason.DECRYPT_FAILED, RejectReason.MALFORMED}
    with pytest.raises(InvalidPacket) as unknown:
        api.open_reading(sealed, keys.headend, api.meter_registry(keys.ca_cert, []), now=now)
    assert unknown.value.reason is RejectReason.UNKNOWN_METER

    bill = next((operator_dir / "for-customer").glob("*.bill.cose")).read_bytes()
    proof = next((operator_dir / "for-customer").glob("*.proof.cbor")).read_bytes()
    public = operator_dir
    assert api.verify_bill(bill, proof, public).reading.meter_id == reading.meter_id
    changed = bytearray(bill)
    changed[len(changed) // 2] ^= 1
    with pytest.raises(api.MetersealError):
        api.verify_bill(bytes(changed), proof, public)
    with pytest.raises(ReadingProofError, match="countersignature"):
        # The billing service's own signature without the authority's is not enough.
        api.verify_bill(_uncountersigned(bill), proof, public)


def _uncountersigned(bill: bytes) -> bytes:
    """The bill with the authority's countersignature header removed (as issued, unaudited)."""
    from meterseal.crypto import cose

    signed = cose.parse_sign1(bill)
    return cose.Sign1(signed.protected, {}, {}, signed.payload, signed.signature).encode()
