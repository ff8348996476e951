"""A bucket's re-encoding under its new default policy, in the background, resumed after a restart.

`PUT /v1/policy/{bucket}` with `"existing": true` starts a `ReencodeJob`: the bucket's objects,
page by page in name order, each not yet under the policy re-encoded by the store's
`set_policy` (a new version; the old one stays readable until the swap, so no read fails).
The job is kept as a reserved object of the gateway (`RESERVED/reencode/BUCKET`, sealed like
every object), saved after every page with the name it has reached and its counts, so a
gateway started again goes on from the last saved page (`ReencodeJobs.resume`): objects of the
page it was in are listed again and skipped when already re-encoded. An object whose
re-encoding was cut off keeps its old version (the new blobs are left to the sweep).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from meterseal.errors import KvsError
from meterseal.kvs.gateway_state import RESERVED, Objects, read_versioned
from meterseal.kvs.policy import Policy, parse_policy

JOBS = "reencode/"  # RESERVED/reencode/BUCKET: the bucket's last re-encoding
PAGE = 100  # objects listed (and progress saved) at a time
_log = logging.getLogger(__name__)


@dataclass
class ReencodeJob:
    """One bucket's re-encoding: its policy, the last name done, its counts."""

    bucket: str
    policy: str
    after: str = ""  # every object up to this name (in name order) has been handled
    done: int = 0
    total: int = 0
    failed: int = 0
    finished: bool = False

    def to_bytes(self) -> bytes:
        """The job in CBOR."""
        return bytes(cbor2.dumps(dataclasses.asdict(self), canonical=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> ReencodeJob:
        """A job from its CBOR; KvsError when it is not one."""
        try:
            return cls(**cbor2.loads(data))
        except (TypeError, ValueError, cbor2.CBORDecodeError) as exc:
            raise KvsError(f"a stored re-encoding job does not read: {exc}") from None


async def _one(data: bytes) -> Any:
    yield data


@dataclass
class ReencodeJobs:
    """The gateway's re-encoding jobs: started, saved page by page, resumed."""

    objects: Objects
    internal_policy: Callable[[], Policy]  # how the jobs themselves are kept (the state's)
    page: int = PAGE
    running: dict[str, ReencodeJob] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def get(self, bucket: str) -> ReencodeJob | None:
        """The bucket's job running here, else the stored one (another gateway's, or done)."""
        if bucket in self.running:
            return self.running[bucket]
        found = await read_versioned(self.objects, RESERVED, JOBS + bucket)
        return None if found is None else ReencodeJob.from_bytes(found[1])

    async def start(self, bucket: str, policy: Policy) -> ReencodeJob:
        """Re-encode `bucket` under `policy` unless a job of it is still under way."""
        current = await self.get(bucket)
        if current is not None and not current.finished:
            if bucket not in self.running:  # stored unfinished: its gateway stopped
                self._spawn(current)
            return current
        job = ReencodeJob(bucket, str(policy))
        await self._save(job)
        self._spawn(job)
        return job

    async def resume(self) -> list[str]:
        """Go on with every stored job not finished (at start); the buckets resumed."""
        resumed: list[str] = []
        after: str | None = ""
        while after is not None:
            listed = await self.objects.list(RESERVED, JOBS, after, 1000)
            for info in listed.objects:
                bucket = info.name.removeprefix(JOBS)
                job = await self.get(bucket)
                if job is not None and not job.finished and bucket not in self.running:
                    self._spawn(job)
                    resumed.append(bucket)
            after = listed.next_after
        return resumed

    async def close(self) -> None:
        """Stop the jobs running here (they resume from their last saved page)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, job: ReencodeJob) -> None:
        self.running[job.bucket] = job
        task = asyncio.create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _save(self, job: ReencodeJob) -> None:
        data = _one(job.to_bytes())
        await self.objects.put(RESERVED, JOBS + job.bucket, data, self.internal_policy())

    async def _run(self, job: ReencodeJob) -> None:
        try:
            await self._pages(job)
        except asyncio.CancelledError:
            raise
        except Exception:  # the job ends, counted as failed; nothing stays half-swapped
            _log.exception("kvs: re-encoding bucket %s failed", job.bucket)
            job.failed, job.finished = job.failed + 1, True
        finally:
            if self.running.get(job.bucket) is job and job.finished:
                del self.running[job.bucket]

    async def _pages(self, job: ReencodeJob) -> None:
        """Re-encode page after page, saving the job after each (module doc)."""
        policy = parse_policy(job.policy)
        while not job.finished:
            try:
                listed = await self.objects.list(job.bucket, "", job.after, self.page)
            except KvsError as exc:
                _log.warning("kvs: re-encoding %s stopped: %s", job.bucket, exc)
                job.failed += 1
                listed = None
            for info in [] if listed is None else listed.objects:
                job.total += 1
                try:
                    if info.policy != policy:
                        await self.objects.set_policy(job.bucket, info.name, policy)
                    job.done += 1
                except KvsError as exc:
                    _log.warning("kvs: re-encoding %s/%s: %s", job.bucket, info.name, exc)
                    job.failed += 1
            if listed is None or listed.next_after is None:
                job.finished = True
            else:
                job.after = listed.next_after
            await self._save(dataclasses.replace(job))  # counts as of `after`, consistent
