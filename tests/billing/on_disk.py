"""Bills made as an operator makes them, on disk: deployment, store, billed, audited, exported."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from meterseal.bench.months import store_months
from meterseal.meter.provisioning import ProvisionedMeter, load_fleet
from meterseal.storage import Store
from tests.billing.conftest import ANONYMIZATION_KEY, PERIOD
from tests.command_line import invoke

TARIFFS = Path(__file__).resolve().parents[2] / "src" / "meterseal" / "billing" / "tariffs"


def text_of(output: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(output.split())


def run(*args: str, code: int = 0) -> str:
    """`meterseal ARGS`, asserting its exit code; its output unwrapped."""
    result = invoke(list(args))
    assert result.exit_code == code, result.output
    return text_of(result.output)


def month_on_disk(directory: Path, meters: int) -> tuple[Path, str, list[ProvisionedMeter]]:
    """A deployment, `meters` registered Ed25519 meters and a day of their signed readings."""
    deployment = directory / "dep"
    store = f"sqlite:///{directory / 'store.db'}"
    fleet_file = deployment / "fleet-ed25519.cbor"
    run("keys", "init", str(deployment))
    run("meters", "provision", str(meters), "--deployment", str(deployment), "--suite", "ed25519")
    run("meters", "register", str(fleet_file), "-d", str(deployment), "--store", store)
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


def bill_on_disk(deployment: Path, store: str, tariff: str, *more: str, code: int = 0) -> str:
    """`meterseal bill` for the day of readings (options `more`); its output."""
    first = dt.datetime.fromtimestamp(PERIOD.start, dt.UTC).date().isoformat()
    return run(
        "bill", "--tariff", tariff, "--from", first, "--days", "1",
        "-d", str(deployment), "--store", store, *more, code=code,
    )  # fmt: skip


@dataclass(frozen=True)
class ExportedBill:
    """A countersigned bill, one reading's proof and the public material a customer holds."""

    bill_file: Path
    proof: Path
    meter_id: str
    counter: int
    deployment: Path

    def verify_args(self) -> list[str]:
        """`meterseal verify-bill` arguments checking the proof against the bill."""
        d = self.deployment
        return [
            "verify-bill", str(self.bill_file), "--reading", str(self.proof),
            "--ca", str(d / "ca.cert.pem"), "--billing-key", str(d / "billing.pub.pem"),
            "--authority-key", str(d / "metrology.pub.pem"),
        ]  # fmt: skip


def exported_bill(directory: Path) -> ExportedBill:
    """One meter's day billed on the TOU tariff, audited clean and exported with one proof."""
    deployment, store, fleet = month_on_disk(directory, 1)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-tou")
    run("audit", "-d", str(deployment), "--store", store)
    meter = fleet[0].key.meter_id
    bill_id = f"{fleet[0].customer_id}/{PERIOD.start}-{PERIOD.end}"
    counter = PERIOD.start // 900 + 7
    out = directory / "out"
    run("export-bill", bill_id, "--out", str(out), "--reading", f"{meter}:{counter}",
        "--store", store)  # fmt: skip
    stem = bill_id.replace("/", "_")
    return ExportedBill(
        out / f"{stem}.bill.cose",
        out / f"{stem}.{meter}.{counter}.proof.cbor",
        meter,
        counter,
        deployment,
    )
