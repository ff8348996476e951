"""Opening packets on every core: forked worker processes run `open_batch` on slices of a batch.

Opening is public-key crypto under the GIL, so threads do not help; processes do. Workers
are forked from the trusted process and inherit its head-end keys and a snapshot of the
registry, so no key is ever serialised. A worker returns the verified reading and the
certificate it verified against; the parent then re-checks the meter against its own,
current registry (revocation, validity, suite, same certificate). When the registry's
`generation` moves on (meters added or changed), the workers are forked again, and a packet
verified against a certificate the parent no longer has is opened again in the parent. The
verdicts are those `open_batch` gives with the parent's registry.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor

from meterseal.acquisition.records import Opened, Verified
from meterseal.crypto import packet
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.packet import OpenedPacket
from meterseal.crypto.registry import MeterDirectory
from meterseal.crypto.suites import suite_named
from meterseal.errors import InvalidPacket, RejectReason
from meterseal.model import Reading

PR_SET_PDEATHSIG = 1
MIN_SLICE = 32  # below this a batch is opened in the parent: shipping it costs more than it saves


_Verdict = Verified | RejectReason
_inherited: tuple[HeadEndKeys, MeterDirectory] | None = None


def _open_slice(args: tuple[list[bytes], float]) -> list[_Verdict]:
    assert _inherited is not None, "workers are forked with the keys in place"
    headend, registry = _inherited
    blobs, now_ts = args
    now = dt.datetime.fromtimestamp(now_ts, dt.UTC)
    out: list[_Verdict] = []
    for result in packet.open_batch(blobs, headend, registry, now=now):
        if isinstance(result, InvalidPacket):
            out.append(result.reason)
        else:
            r = result.reading
            out.append(
                (
                    r.meter_id,
                    r.counter,
                    r.timestamp,
                    r.interval,
                    r.energy_wh,
                    r.phasor,
                    result.suite.name,
                    result.sent_at,
                    result.signed_original,
                    result.meter.certificate.serial_number,
                )
            )
    return out


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _worker_pid(_: int) -> int:
    return os.getpid()


def _die_with_parent(parent: int) -> None:
    # A head-end killed with SIGKILL must not leave its workers (and its keys) behind.
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class ParallelOpener:
    """`open_batch` spread over `workers` forked processes, checked against the live registry."""

    def __init__(
        self,
        headend: HeadEndKeys,
        registry: MeterDirectory,
        workers: int,
        *,
        parent_opens: bool | None = None,
    ) -> None:
        self.headend = headend
        self.registry = registry
        self.workers = workers
        # By default the parent opens a slice too only while there are fewer workers than
        # cores. With a worker per core it would only hold its GIL, for tens of milliseconds
        # a batch, against its receivers and store, which wait up to a switch interval
        # (5 ms) at every socket event and every database call to get it back.
        self.parent_opens = workers < _cores() if parent_opens is None else parent_opens
        self._pool, self._generation = self._fork()
        self._submitting = threading.Lock()

    def _fork(self) -> tuple[ProcessPoolExecutor, int]:
        global _inherited
        generation = getattr(self.registry, "generation", 0)
        _inherited = (self.headend, self.registry)  # read by the workers as they fork
        try:
            pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
            # Fork every worker now rather than lazily in the middle of a batch.
            list(pool.map(_worker_pid, range(self.workers * 4)))
        finally:
            _inherited = None
        return pool, generation

    def open_batch(
        self, blobs: list[bytes], now: dt.datetime
    ) -> list[OpenedPacket | InvalidPacket]:
        """One result per packet, in order, as `packet.open_batch` would give."""
        return [self._opened(outcome) for outcome in self.open_settled(blobs, now)]

    def open_settled(self, blobs: list[bytes], now: dt.datetime) -> list[Opened]:
        """Like `open_batch`, but a packet a worker opened stays (its live record, its fields)."""
        if len(blobs) < MIN_SLICE * 2:
            return list(packet.open_batch(blobs, self.headend, self.registry, now=now))
        with self._submitting:  # two batches may be opened at once, from two threads
            futures, own = self._submit(blobs, now)
        settled: list[Opened] = []
        if own:
            settled += packet.open_batch(own, self.headend, self.registry, now=now)
        offset = len(own)
        settle = self._settle
        for future in futures:
            for verdict in future.result():
                settled.append(settle(blobs[offset], verdict, now))
                offset += 1
        return settled

    def _submit(
        self, blobs: list[bytes], now: dt.datetime
    ) -> tuple[list[Future[list[_Verdict]]], list[bytes]]:
        if getattr(self.registry, "generation", 0) != self._generation:
            self._pool.shutdown(wait=True)
            self._pool, self._generation = self._fork()
        share = -(-len(blobs) // (self.workers + self.parent_opens))
        own = blobs[:share] if self.parent_opens else []  # opened here while workers open theirs
        rest = blobs[len(own) :]
        # Two slices a worker, handed out as workers come free: the parent settles the
        # first slices while the workers still open the last ones, instead of leaving them
        # idle while it settles the whole batch at the end.
        size = max(MIN_SLICE, -(-len(rest) // (2 * self.workers)))
        slices = [rest[i : i + size] for i in range(0, len(rest), size)]
        return [self._pool.submit(_open_slice, (s, now.timestamp())) for s in slices], own

    def _settle(self, blob: bytes, verdict: _Verdict, now: dt.datetime) -> Opened:
        if isinstance(verdict, RejectReason):
            return InvalidPacket(verdict)
        record = self.registry.get(verdict[0])
        if record is None or record.certificate.serial_number != verdict[9]:
            return self._open_here(blob, now)  # verified against a certificate we no longer hold
        try:
            return packet.check_meter(record, suite_named(verdict[6]), now), verdict
        except InvalidPacket as exc:
            return exc

    @staticmethod
    def _opened(outcome: Opened) -> OpenedPacket | InvalidPacket:
        if isinstance(outcome, OpenedPacket | InvalidPacket):
            return outcome
        record, verdict = outcome
        meter_id, counter, timestamp, interval, energy_wh, phasor = verdict[:6]
        _, sent_at, signed_original, _ = verdict[6:]
        reading = Reading(meter_id, counter, timestamp, interval, energy_wh, phasor)
        return OpenedPacket(reading, record, record.suite, sent_at, signed_original)

    def _open_here(self, blob: bytes, now: dt.datetime) -> OpenedPacket | InvalidPacket:
        try:
            return packet.open(blob, self.headend, self.registry, now=now)
        except InvalidPacket as exc:
            return exc

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.shutdown(wait=True, cancel_futures=True)
