"""The agent's pass: one meter's driver failing in any way skips that meter only."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

from meterseal.agent.driver import MeterDriver, MeterTarget
from meterseal.agent.runner import AgentMeter, run_pass
from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import ED25519
from meterseal.errors import MeterTimeout
from meterseal.meter.provisioning import provision
from tests.conftest import NOW


class _Broken:
    """A driver whose meter answers its serial number in bytes that are not text."""

    def __init__(self, target: MeterTarget) -> None:
        self.target = target

    async def identify(self) -> Any:
        if self.target.serial == "20000001":
            return b"\xff\xfe".decode()  # UnicodeDecodeError, no driver error
        raise MeterTimeout(f"meter {self.target.serial} silent")

    async def close(self) -> None:
        return None


def test_a_driver_failing_outside_its_errors_skips_its_meter_and_the_pass_goes_on(
    headend: HeadEndKeys,
) -> None:
    ca_key, ca_cert = certs.create_ca("agent CA", now=NOW, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, 2, ED25519, now=NOW, workers=1)
    meters = [
        AgentMeter(MeterTarget(f"127.0.0.1:{i + 1}", f"2000000{i + 1}"), m)
        for i, m in enumerate(fleet)
    ]

    async def broken(target: MeterTarget) -> MeterDriver:
        return _Broken(target)  # type: ignore[return-value]

    result = asyncio.run(
        run_pass(meters, broken, None, headend.public(), 0, 900)  # type: ignore[arg-type]
    )
    assert result.report.skipped == Counter({"driver_fault": 1, "timeout": 1})
    (fault,) = [o for o in result.meters if o.skipped == "driver_fault"]
    assert fault.serial == "20000001"
    assert "UnicodeDecodeError" in fault.detail
