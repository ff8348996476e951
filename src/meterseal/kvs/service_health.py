"""Whether the gateway can write now: its storage nodes' health, probed in the background.

The runtime's readiness checks are blocking callables asked from a thread; a node's health is
an async probe (a directory's access, a NATS stream's info). `NodeHealth.watch` probes every
node every `every` seconds on the gateway's loop and `reason` answers from the last round:
/readyz says 503 with the counts while fewer nodes are healthy than the default policy needs
(reads may still succeed: a policy tolerates losses; writes of that policy would not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from meterseal.kvs.nodes import BlobNode
from meterseal.kvs.policy import Policy

PROBE_EVERY = 5.0  # seconds between rounds of probes
PROBE_TIMEOUT = 2.0  # a node that does not answer within this is not healthy


async def _healthy(node: BlobNode) -> bool:
    try:
        return await asyncio.wait_for(node.healthy(), PROBE_TIMEOUT)
    except Exception:  # a node that fails its probe is simply not healthy
        return False


@dataclass
class NodeHealth:
    """The last probe round of `nodes` against what `policy` needs."""

    nodes: Sequence[BlobNode]
    policy: Policy
    every: float = PROBE_EVERY
    healthy: int | None = field(default=None, init=False)  # None: not probed yet

    async def probe(self) -> int:
        """Probe every node once; how many are healthy."""
        answers = await asyncio.gather(*(_healthy(node) for node in self.nodes))
        self.healthy = sum(answers)
        return self.healthy

    async def watch(self) -> None:
        """Probe every `every` seconds until cancelled."""
        while True:
            await self.probe()
            await asyncio.sleep(self.every)

    def reason(self) -> str | None:
        """Why the gateway cannot take writes of its default policy now (None: it can)."""
        if self.healthy is None:
            return "the storage nodes have not been probed yet"
        needed = self.policy.nodes_needed
        if self.healthy >= needed:
            return None
        return (
            f"{self.healthy} of {len(self.nodes)} storage nodes are healthy; the default "
            f"policy {self.policy} needs {needed}"
        )
