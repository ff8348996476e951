"""A bucket's re-encoding survives a gateway restart: saved page by page, resumed, no read fails."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx

from meterseal.kvs.gateway_reencode import ReencodeJob, ReencodeJobs
from meterseal.kvs.nodes import MemoryCatalog, MemoryNode
from meterseal.kvs.policy import Policy, Replication, parse_policy
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service import GatewayOptions, StoreLayout, open_store
from meterseal.kvs.store import ObjectInfo, ObjectStore
from tests.kvs.service_fixtures import MASTER as SERVED_MASTER
from tests.kvs.service_fixtures import OPERATOR, Running, add_key
from tests.kvs.store_fixtures import MASTER, memory_store, seeded

TARGET = parse_policy("ec:3+2")
KEEP = lambda: Replication(3)  # noqa: E731 - how the gateway keeps its own objects
OBJECTS = {f"m{i:02d}": bytes([i]) * (40 * i + 1) for i in range(12)}  # 1 to 8 chunks of 64


class Stalling:
    """The store, whose `set_policy` hangs from its `after`-th call on (a gateway stopping)."""

    def __init__(self, store: ObjectStore, after: int) -> None:
        self.store, self.after, self.calls = store, after, 0
        self.stalled = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def set_policy(self, bucket: str, name: str, policy: Policy) -> ObjectInfo:
        """Re-encode, unless this is the call where the gateway stops."""
        self.calls += 1
        if self.calls > self.after:
            self.stalled.set()
            await asyncio.Event().wait()  # cancelled here
        return await self.store.set_policy(bucket, name, policy)


def _restarted(nodes: list[MemoryNode], catalog: MemoryCatalog) -> ObjectStore:
    return ObjectStore(
        nodes,
        catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: 1_780_000_000.0,
        rng=seeded(3).randbytes,
    )


async def _read_all_until(store: ObjectStore, done: asyncio.Event) -> int:
    """Read every object again and again until `done`; how many reads (each one checked)."""
    reads = 0
    while not done.is_set():
        for name, data in OBJECTS.items():
            assert b"".join([p async for p in store.get("meters", name)]) == data
            reads += 1
        await asyncio.sleep(0)
    return reads


def test_a_reencoding_cut_off_by_a_restart_goes_on_from_its_last_page() -> None:
    async def scenario() -> None:
        store, nodes, catalog = memory_store(5, chunk_size=64, yielding=True)  # reads interleave
        for name, data in OBJECTS.items():
            await store.put_bytes("meters", name, data, Replication(1))
        stalling = Stalling(store, after=6)  # stops within the second page of 4
        first = ReencodeJobs(stalling, KEEP, page=4)
        await first.start("meters", TARGET)
        await stalling.stalled.wait()
        await first.close()  # the gateway stops
        stored = await ReencodeJobs(store, KEEP).get("meters")
        assert stored == ReencodeJob("meters", "ec:3+2", after="m03", done=4, total=4)

        again = _restarted(nodes, catalog)  # started again: nothing in memory
        jobs = ReencodeJobs(again, KEEP, page=4)
        finished = asyncio.Event()
        reader = asyncio.create_task(_read_all_until(again, finished))
        assert await jobs.resume() == ["meters"]
        while "meters" in jobs.running:  # until it finished here
            await asyncio.sleep(0.01)
        finished.set()
        assert await reader > 0  # reads went on during the re-encoding, none failed
        job = await jobs.get("meters")  # as stored
        assert job is not None
        assert (job.done, job.total, job.failed, job.finished) == (12, 12, 0, True)
        for name in OBJECTS:
            info = await again.head("meters", name)
            assert info is not None
            assert info.policy == TARGET
        assert await jobs.resume() == []  # finished: nothing to resume

    asyncio.run(scenario())


def test_the_served_gateway_resumes_a_stored_reencoding_at_start(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path / "kvs", 5)
    key = add_key(layout, OPERATOR)

    async def leave_a_job_half_done() -> None:
        opened = await open_store(layout, SERVED_MASTER, TARGET, os.urandom)
        try:
            for name, data in OBJECTS.items():
                await opened.store.put_bytes("meters", name, data, Replication(1))
            await opened.store.set_policy("meters", "m00", TARGET)
            jobs = ReencodeJobs(opened.store, KEEP)
            await jobs._save(ReencodeJob("meters", "ec:3+2", after="m00", done=1, total=1))
        finally:
            await opened.close()

    asyncio.run(leave_a_job_half_done())
    options = GatewayOptions(tmp_path, "http://unused", layout, "rep:1", "127.0.0.1:0")
    with (
        Running(options) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client,
    ):
        deadline = time.monotonic() + 60
        while True:
            for name, data in OBJECTS.items():  # no read fails while it goes on
                assert client.get(f"/v1/kvs/meters/{name}").content == data
            progress = client.get("/v1/policy/meters").json()["reencoding"]
            if progress["finished"]:
                break
            assert time.monotonic() < deadline, progress
        assert progress == {
            "policy": "ec:3+2", "done": 12, "total": 12, "failed": 0, "finished": True
        }  # fmt: skip
        listed = client.get("/v1/kvs/meters").json()["objects"]
        assert {o["policy"] for o in listed} == {"ec:3+2"}
