"""Emulated DLMS meters read by the agent into a head-end and billed like simulated meters."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.agent.dlms_driver import DlmsSecrets
from meterseal.agent.dlms_emulator import DlmsEmulator, DlmsFault, DlmsMeterLine, Transport
from meterseal.agent.dlms_meter import DlmsMeterApp
from meterseal.agent.driver import MeterTarget
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.agent.protocols import driver_factory
from meterseal.agent.runner import AgentMeter, AgentPass
from meterseal.billing.completeness import Period
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import P256
from meterseal.meter.load import Fleet
from meterseal.meter.provisioning import fleet_records, provision
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.agent.headend import pass_into_head_end
from tests.conftest import NOW

T = int(NOW.timestamp())
PERIOD = Period.days(dt.date(2026, 10, 30), 1)
FAULTS = [frozenset(), frozenset(), {DlmsFault.TIMEOUT}, {DlmsFault.FOREIGN}]


@pytest.mark.parametrize("protocol", ["dlms", "dlms-hdlc"])
def test_dlms_meters_are_read_sealed_and_billed_by_their_registers(
    protocol: str, headend: HeadEndKeys, tmp_path: Path
) -> None:
    ca_key, ca_cert = certs.create_ca("agent CA", now=NOW, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, len(FAULTS), P256, now=NOW, prefix="DLMS", workers=1)
    model = Fleet(7)
    emulated = [EmulatedMeter(f"{40_000_001 + i}", i, model, lambda: T) for i in range(4)]
    secrets = {m.serial: DlmsSecrets(f"pw-{m.serial}".encode()) for m in emulated}
    transport = Transport.HDLC if protocol == "dlms-hdlc" else Transport.WRAPPER
    emulator = DlmsEmulator(
        [
            DlmsMeterLine(DlmsMeterApp(m, secrets[m.serial].password), transport, frozenset(f))
            for m, f in zip(emulated, FAULTS, strict=True)
        ]
    )
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    store = Store.open(url)
    store.register_meters(fleet_records(ca_cert, fleet), now=NOW)

    async def run() -> AgentPass:
        addresses = await emulator.start()
        try:
            meters = [
                AgentMeter(MeterTarget(f"{h}:{p}", m.serial, timeout=4.0), provisioned)
                for (h, p), m, provisioned in zip(addresses, emulated, fleet, strict=True)
            ]
            factory = driver_factory(protocol, dlms_keys=secrets)
            return await pass_into_head_end(headend, ca_cert, store, meters, factory, PERIOD)
        finally:
            await emulator.stop()

    report = asyncio.run(run()).report
    assert report.meters_read == 2
    assert report.skipped == Counter({"timeout": 1, "wrong_serial": 1})
    assert report.acks == Counter({"accepted": 2 * 96})

    bills = BillStore(store)
    tariff = builtin_tariffs().latest("example-tou")
    bills.add_tariff(tariff, now=NOW)
    service = BillingService(
        bills, ec.generate_private_key(ec.SECP256R1()), clock=lambda: NOW.timestamp()
    )
    for provisioned, meter in zip(fleet[:2], emulated, strict=False):
        bill = service.bill_customer(
            provisioned.customer_id, [provisioned.key.meter_id], PERIOD, tariff
        ).bill
        (statement,) = bill.meters
        assert (statement.expected, statement.received) == (96, 96)
        # What the DLMS meter's own register counted over the day is what is billed.
        assert statement.measured_wh == meter.register_wh(PERIOD.end) - meter.register_wh(
            PERIOD.start
        )
    store.close()
