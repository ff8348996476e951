"""The store's nodes: by name, which take writes now, and where a write of a policy goes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from meterseal.errors import KvsError
from meterseal.kvs.nodes import BlobNode, ReplicaSet
from meterseal.kvs.policy import Policy, Replication


class NodePool:
    """Nodes and replica sets by name, with their health kept for `health_ttl` seconds."""

    def __init__(
        self,
        nodes: Sequence[BlobNode],
        replica_sets: Sequence[ReplicaSet],
        clock: Callable[[], float],
        health_ttl: float = 0.0,
    ) -> None:
        self.nodes = list(nodes)
        self.replica_sets = list(replica_sets)
        self.by_name: dict[str, BlobNode] = {n.name: n for n in [*self.nodes, *self.replica_sets]}
        if len(self.by_name) != len(self.nodes) + len(self.replica_sets):
            raise KvsError("node and replica set names must be distinct")
        self.clock = clock
        # A node's "healthy" is trusted for `health_ttl` seconds of `clock` when placing writes
        # (0: asked on every write); a node that failed a write is asked again (`forget`).
        self.health_ttl = health_ttl
        self._health: dict[str, tuple[float, bool]] = {}

    async def healthy(self, node: BlobNode) -> bool:
        """Whether `node` takes writes (its answer kept for `health_ttl` seconds)."""
        now = self.clock()
        known = self._health.get(node.name)
        if known is not None and 0 <= now - known[0] < self.health_ttl:
            return known[1]
        try:
            ok = bool(await node.healthy())
        except Exception:  # a node that cannot say it is healthy is not
            ok = False
        self._health[node.name] = (now, ok)
        return ok

    def forget(self, name: str) -> None:
        """Ask node `name` again next time (it failed a write)."""
        self._health.pop(name, None)

    async def placement(self, policy: Policy) -> list[BlobNode]:
        """The healthy nodes a write of `policy` rotates over; KvsError when too few are."""
        if isinstance(policy, Replication):
            for replica_set in self.replica_sets:
                if replica_set.copies == policy.copies and await self.healthy(replica_set):
                    return [replica_set]
        health = await asyncio.gather(*(self.healthy(n) for n in self.nodes))
        pool = [node for node, ok in zip(self.nodes, health, strict=True) if ok]
        if len(pool) < policy.nodes_needed:
            down = [node.name for node, ok in zip(self.nodes, health, strict=True) if not ok]
            raise KvsError(
                f"policy {policy} needs {policy.nodes_needed} healthy nodes; {len(pool)} of "
                f"{len(self.nodes)} are healthy" + (f" (down: {', '.join(down)})" if down else "")
            )
        return pool
