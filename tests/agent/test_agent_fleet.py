"""A fleet of emulated NBR 14522 meters read by the agent into a head-end, billed and audited.

The bill of each meter read must equal what its emulated registers say for the period, and
every faulty meter must be skipped and counted by reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.agent.driver import MeterTarget
from meterseal.agent.link_keys import party
from meterseal.agent.nbr_emulator import Fault, MeterLine, TcpLine
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.agent.nbr_sealed_link import SealedMeterLine
from meterseal.agent.protocols import READER, driver_factory
from meterseal.agent.runner import AgentMeter, AgentPass
from meterseal.billing.auditor import Auditor
from meterseal.billing.completeness import Period
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import ED25519
from meterseal.meter.load import Fleet
from meterseal.meter.provisioning import fleet_records, provision
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.agent.headend import pass_into_head_end
from tests.conftest import NOW

T = int(NOW.timestamp())
ZONE = "America/Sao_Paulo"
PERIOD = Period.days(dt.date(2026, 10, 30), 1)
FAULTS = [Fault.NONE, Fault.NONE, Fault.FLAKY_CRC, Fault.NONE]
FAULTY = [Fault.BAD_CRC, Fault.TIMEOUT, Fault.PARTIAL, Fault.FOREIGN]
# A meter that answers gets 10 s (the sealed link has no WAIT, and a loaded machine working out
# eight load-model months at once must not have a slow answer taken for silence); the silent
# meter and the partial block, whose timeout is the point, wait 2 s.
WAITS = {Fault.TIMEOUT: 2.0, Fault.PARTIAL: 2.0}


@pytest.mark.parametrize("protocol", ["nbr14522", "nbr14522-sealed"])
def test_an_emulated_fleet_is_read_sealed_billed_and_audited(
    headend: HeadEndKeys, tmp_path: Path, protocol: str
) -> None:
    sealed = protocol.endswith("-sealed")
    keys = tmp_path / "link-keys"
    ca_key, ca_cert = certs.create_ca("agent CA", now=NOW, rng=os.urandom)
    faults = FAULTS + FAULTY
    fleet = provision(ca_key, ca_cert, len(faults), ED25519, now=NOW, prefix="NBR", workers=1)
    model = Fleet(7)
    emulated = [
        EmulatedMeter(f"{20_000_001 + i}", i, model, lambda: T, tz=ZONE) for i in range(len(faults))
    ]
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    store = Store.open(url)
    store.register_meters(fleet_records(ca_cert, fleet), now=NOW)

    async def run() -> AgentPass:
        lines: list[TcpLine] = []
        for meter, fault in zip(emulated, faults, strict=True):
            if sealed:
                me, reader = party(keys, meter.serial), party(keys, READER).peer()
                lines.append(SealedMeterLine(meter=meter, me=me, reader=reader, fault=fault))
            else:
                lines.append(MeterLine(meter=meter, fault=fault))
        try:
            addresses = [await line.start() for line in lines]
            meters = [
                AgentMeter(
                    MeterTarget(f"{h}:{p}", m.serial, timeout=WAITS.get(f, 10.0)), provisioned
                )
                for (h, p), m, f, provisioned in zip(
                    addresses, emulated, faults, fleet, strict=True
                )
            ]
            factory = driver_factory(protocol, tz=ZONE, attempts=2, link_keys=keys)
            return await pass_into_head_end(headend, ca_cert, store, meters, factory, PERIOD)
        finally:
            for line in lines:
                await line.stop()

    result = asyncio.run(run())
    report = result.report
    good = len(FAULTS)
    assert report.meters_read == good
    # A damaged block is NAKed on the plain line; a tampered sealed message does not open.
    damaged = "bad_seal" if sealed else "bad_frame"
    reasons = [damaged, "timeout", "partial_frame", "wrong_serial"]
    assert report.skipped == Counter(reasons)
    assert report.readings_sealed == good * 96
    assert report.acks == Counter({"accepted": good * 96})
    skipped = {o.meter_id: o.skipped for o in result.meters if o.skipped}
    assert skipped == {fleet[good + i].key.meter_id: reason for i, reason in enumerate(reasons)}

    bills = BillStore(store)
    tariff = builtin_tariffs().latest("example-tou")
    bills.add_tariff(tariff, now=NOW)
    billing_key = ec.generate_private_key(ec.SECP256R1())
    service = BillingService(bills, billing_key, clock=lambda: NOW.timestamp())
    billed = {}
    for provisioned, meter in zip(fleet[:good], emulated, strict=False):
        bill = service.bill_customer(
            provisioned.customer_id, [provisioned.key.meter_id], PERIOD, tariff
        ).bill
        (statement,) = bill.meters
        assert (statement.expected, statement.received, statement.estimated_wh) == (96, 96, 0)
        # The bill is what the meter's own registers counted over the period.
        assert statement.measured_wh == meter.register_wh(PERIOD.end) - meter.register_wh(
            PERIOD.start
        )
        billed[provisioned.key.meter_id] = bill.bill_id
    registers = {o.meter_id: o.registers for o in result.meters if o.registers is not None}
    for provisioned, meter in zip(fleet[:good], emulated, strict=False):
        snapshot = registers[provisioned.key.meter_id]
        assert snapshot.active_import_wh == meter.register_wh(T)

    auditor = Auditor(
        BillStore(Store.open_read_only(url)),
        bills,
        ec.generate_private_key(ec.SECP256R1()),
        ca_cert,
        billing_key.public_key(),
        clock=lambda: NOW.timestamp(),
    )
    for bill_id in billed.values():
        outcome = auditor.audit(bill_id)
        assert outcome.report.clean, outcome.report.findings
        assert outcome.report.signatures_verified == 96
    store.close()
