"""Scrubbing and repair of the secure KVS: find missing and corrupt blobs, rebuild them.

`scrub(store, buckets, repair=True)` reads every blob of every object of the buckets and checks
its tag (a GMAC under the object's key) against the manifest. A bad blob is rebuilt from the
chunk's intact copies or fragments (encoding is deterministic: a rebuilt fragment is byte for
byte the lost one) and written back to its node when that node is healthy, else to a healthy
node holding nothing of that chunk; the manifest then records the move. Afterwards, blobs
failed nodes kept from deleted versions are collected again.

`sweep(store, buckets, suspects, grace)` deletes blobs no manifest names (a writer that crashed
mid-write, a delete a dead node missed) once they stayed unnamed for `grace` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from meterseal.errors import KvsError
from meterseal.kvs.erasure import coder
from meterseal.kvs.manifest import Blob, Manifest
from meterseal.kvs.nodes import BlobNode
from meterseal.kvs.policy import Replication
from meterseal.kvs.sealing import blob_intact, unwrap_key
from meterseal.kvs.store import ObjectStore

_log = logging.getLogger(__name__)


@dataclass
class ScrubReport:
    """What a scrub found and did."""

    objects: int = 0
    blobs: int = 0
    missing: int = 0
    corrupt: int = 0
    repaired: int = 0
    unrepaired: int = 0
    orphans_left: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Whether every blob is (again) where its manifest says, intact."""
        return self.unrepaired == 0 and not self.problems


async def scrub(store: ObjectStore, buckets: Iterable[str], repair: bool = True) -> ScrubReport:
    """Check every blob of every object in `buckets`; rebuild bad ones when `repair`."""
    report = ScrubReport()
    for bucket in buckets:
        names = []
        async for found in store.manifests(bucket):
            if isinstance(found, KvsError):
                report.problems.append(f"bucket {bucket}: {found}")
            else:
                names.append(found.name)
        for name in names:
            await _scrub_object(store, bucket, name, repair, report)
    report.orphans_left = await store.collect()
    return report


async def _scrub_object(
    store: ObjectStore, bucket: str, name: str, repair: bool, report: ScrubReport
) -> None:
    keys = store.keys(bucket)
    async with store.lock(bucket, name):
        manifest = await store.load(keys, name)
        if manifest is None:  # deleted meanwhile
            return
        report.objects += 1
        try:
            object_key = unwrap_key(keys, manifest.context, manifest.wrapped_key)
        except KvsError as error:
            report.problems.append(f"{bucket}/{name}: {error}")
            return
        repaired = manifest
        for index in range(len(manifest.chunks)):
            repaired = await _scrub_chunk(store, repaired, object_key, index, repair, report)
        if repaired != manifest:
            await store.save(keys, repaired)


async def _scrub_chunk(
    store: ObjectStore,
    manifest: Manifest,
    object_key: bytes,
    index: int,
    repair: bool,
    report: ScrubReport,
) -> Manifest:
    """The manifest after checking (and repairing) chunk `index`."""
    entry = manifest.chunks[index]
    bad: list[Blob] = []
    for position, blob in enumerate(entry.blobs()):
        report.blobs += 1
        problem = await _check(store, blob, object_key, index, position)
        if problem is not None:
            bad.append(blob)
            if problem == "missing":
                report.missing += 1
            else:
                report.corrupt += 1
    if not bad or not repair:
        report.unrepaired += len(bad)
        return manifest
    where = f"{manifest.bucket}/{manifest.name} chunk {index}"
    try:
        sealed = await store.read_sealed(manifest, object_key, index)
    except KvsError as error:
        report.unrepaired += len(bad)
        report.problems.append(f"{where}: lost, {error}")
        return manifest
    rebuilt = _rebuild(manifest, object_key, index, sealed)
    for blob in bad:
        moved = await _rewrite(store, manifest, index, blob, rebuilt[blob])
        if moved is None:
            report.unrepaired += 1
            report.problems.append(f"{where}: no healthy node to rebuild a blob of {blob.node} on")
            continue
        report.repaired += 1
        manifest = manifest.with_blob(index, blob, moved)
    return manifest


async def _check(
    store: ObjectStore, blob: Blob, object_key: bytes, index: int, position: int
) -> str | None:
    """None for an intact blob, else 'missing' (or unreachable) or 'corrupt'."""
    node = store.by_name.get(blob.node)
    if node is None:
        return "missing"
    try:
        data = await node.get(blob.blob_id)
    except Exception:  # an unreachable node: its blobs are as good as missing
        return "missing"
    if data is None:
        return "missing"
    return None if blob_intact(object_key, index, position, data, blob.tag) else "corrupt"


def _rebuild(manifest: Manifest, object_key: bytes, index: int, sealed: bytes) -> dict[Blob, bytes]:
    """Every blob of the chunk from its sealed bytes (fragments by deterministic encoding)."""
    entry = manifest.chunks[index]
    datas = [sealed] * len(entry.replicas)
    if entry.fragments and not isinstance(manifest.policy, Replication):
        datas += coder(manifest.policy.k, manifest.policy.m).encode(sealed)
    blobs = entry.blobs()
    for position, (blob, data) in enumerate(zip(blobs, datas, strict=True)):
        if not blob_intact(object_key, index, position, data, blob.tag):
            raise KvsError(f"rebuilt blob {blob.blob_id} does not match its manifest")
    return dict(zip(blobs, datas, strict=True))


async def _rewrite(
    store: ObjectStore, manifest: Manifest, index: int, blob: Blob, data: bytes
) -> Blob | None:
    """Write a rebuilt blob: on its own node if healthy, else on a node free of this chunk."""
    holding = {b.node for b in manifest.chunks[index].blobs()}
    own = store.by_name.get(blob.node)
    candidates: list[tuple[BlobNode, Blob]] = []
    if own is not None:
        candidates.append((own, blob))
    candidates += [
        (node, Blob(node.name, store.rng(16).hex(), blob.tag))
        for node in store.nodes
        if node.name not in holding
    ]
    for node, target in candidates:
        try:
            if not await node.healthy():
                continue
            await node.put(target.blob_id, data)
        except Exception as error:  # a node failing now: try the next one
            _log.warning("kvs repair: node %s refused a rebuilt blob: %s", node.name, error)
            continue
        return target
    return None


@dataclass
class SweepReport:
    """What a sweep of unreferenced blobs found and deleted."""

    blobs: int = 0  # on the nodes that answered
    referenced: int = 0
    suspects: int = 0  # unreferenced, kept until the grace period has passed
    deleted: int = 0
    unreachable: list[str] = field(default_factory=list)


async def sweep(
    store: ObjectStore,
    buckets: Iterable[str],
    suspects: dict[tuple[str, str], float],
    grace: float,
) -> SweepReport:
    """Delete blobs no manifest names that were already unnamed `grace` seconds ago.

    `buckets` must be every bucket of the store (a blob of a bucket left out looks unused):
    a catalog holding a bucket id none of them has stops the sweep before anything is deleted.
    `suspects` ((node, blob id) -> when first seen unused, by the store's clock) carries the
    marks from one sweep to the next; a write under way elsewhere has `grace` to save its
    manifest (this store's own writes are never suspects). A manifest that does not open
    stops the sweep: the blobs it names are unknown.
    """
    buckets = list(buckets)
    unknown = set(await store.catalog.bucket_ids()) - {store.keys(b).bucket_id for b in buckets}
    if unknown:  # its manifests cannot be opened: every blob they name would look unused
        raise KvsError(
            f"sweep stopped: the catalog holds {len(unknown)} bucket(s) the registry does not "
            "name (a bucket written through another gateway whose registry entry is not "
            "visible yet?); nothing was deleted"
        )
    named = {(b.node, b.blob_id) for b in store.writing()}
    for bucket in buckets:
        async for found in store.manifests(bucket):
            if isinstance(found, KvsError):
                raise KvsError(f"sweep stopped, bucket {bucket}: {found}")
            named |= {(b.node, b.blob_id) for b in found.blobs()}
    report = SweepReport()
    now = store.clock()
    seen: set[tuple[str, str]] = set()
    down: set[str] = set()
    for node in store.by_name.values():
        try:
            ids = [blob_id async for blob_id in node.blob_ids()]
        except Exception as error:  # a node down keeps its blobs for a later sweep
            report.unreachable.append(f"{node.name}: {error}")
            down.add(node.name)
            continue
        for blob_id in ids:
            item = (node.name, blob_id)
            seen.add(item)
            report.blobs += 1
            if item in named:
                report.referenced += 1
            elif now - suspects.setdefault(item, now) >= grace:
                await _delete(node, blob_id, report)
                suspects.pop(item)
            else:
                report.suspects += 1
    for gone in set(suspects) - seen:  # deleted meanwhile (a node down keeps its marks)
        if gone[0] not in down:
            suspects.pop(gone)
    return report


async def _delete(node: BlobNode, blob_id: str, report: SweepReport) -> None:
    try:
        await node.delete(blob_id)
    except Exception as error:  # tried again on the next sweep
        report.unreachable.append(f"{node.name}: {error}")
        return
    report.deleted += 1
