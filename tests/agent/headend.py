"""A head-end serving on port 0 for the agent's fleet tests, and the pass run into it."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from meterseal.acquisition.headend import HeadEnd, HeadEndSettings
from meterseal.acquisition.tcp import TcpLink
from meterseal.agent.driver import DriverFactory
from meterseal.agent.runner import AgentMeter, AgentPass, run_pass
from meterseal.agent.spool import ReadingSpool
from meterseal.billing.completeness import Period
from meterseal.crypto.keys import HeadEndKeys
from meterseal.deployment import TrustedMaterial
from meterseal.storage import Store
from tests.conftest import NOW


async def pass_into_head_end(
    headend: HeadEndKeys,
    ca_cert: x509.Certificate,
    store: Store,
    meters: Sequence[AgentMeter],
    factory: DriverFactory,
    period: Period,
    spool: ReadingSpool | None = None,
) -> AgentPass:
    """Serve a head-end over `store` on port 0, run the agent's pass of `period` into it."""
    at = int(NOW.timestamp())
    head = HeadEnd(
        TrustedMaterial(headend, ca_cert, b"a" * 32),
        store,
        HeadEndSettings(tcp="127.0.0.1:0", registry_refresh=300),
        clock=lambda: at,
    )
    host, port = (await head.start())["tcp"].rsplit(":", 1)
    try:
        return await run_pass(
            meters,
            factory,
            TcpLink(host, int(port)),
            headend.public(),
            period.start,
            period.end,
            now=lambda: NOW,
            spool=spool,
        )
    finally:
        await head.stop()
