"""A pass after a crash, or a window read again: the spooled packets go again, none refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from meterseal.agent import runner
from meterseal.agent.driver import MeterTarget
from meterseal.agent.nbr_emulator import MeterLine
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.agent.protocols import driver_factory
from meterseal.agent.runner import AgentMeter, AgentPass
from meterseal.agent.spool import ReadingSpool
from meterseal.billing.completeness import Period
from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import P256
from meterseal.errors import ConfigurationError
from meterseal.meter.load import Fleet
from meterseal.meter.provisioning import fleet_records, provision
from meterseal.meter.simulator import send_meter
from meterseal.storage import Store
from tests.agent.headend import pass_into_head_end
from tests.conftest import NOW

T = int(NOW.timestamp())
PERIOD = Period.days(dt.date(2026, 10, 30), 1)


def _passes(
    headend: HeadEndKeys, tmp_path: Path, spool: ReadingSpool | None, runs: int
) -> tuple[list[AgentPass | BaseException], Store]:
    """`runs` passes of one emulated NBR 14522 meter's day into one head-end's store."""
    ca_key, ca_cert = certs.create_ca("spool CA", now=NOW, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, 1, P256, now=NOW, prefix="SPL", workers=1)
    meter = EmulatedMeter("20000001", 0, Fleet(7), lambda: T)
    store = Store.open(f"sqlite:///{tmp_path / 'spool.db'}")
    store.register_meters(fleet_records(ca_cert, fleet), now=NOW)

    async def run() -> list[AgentPass | BaseException]:
        line = MeterLine(meter=meter)
        host, port = await line.start()
        agent = [AgentMeter(MeterTarget(f"{host}:{port}", meter.serial, timeout=5.0), fleet[0])]
        factory = driver_factory("nbr14522", attempts=2)
        done: list[AgentPass | BaseException] = []
        try:
            for _ in range(runs):
                try:
                    done.append(await pass_into_head_end(
                        headend, ca_cert, store, agent, factory, PERIOD, spool
                    ))  # fmt: skip
                except SystemError as crash:
                    done.append(crash)
        finally:
            await line.stop()
        return done

    return asyncio.run(run()), store


def test_a_window_read_again_without_the_spool_is_refused(
    headend: HeadEndKeys, tmp_path: Path
) -> None:
    # Why the spool exists: sealed anew, the same intervals are other signed originals.
    (first, second), store = _passes(headend, tmp_path, None, 2)
    assert isinstance(first, AgentPass)
    assert isinstance(second, AgentPass)
    assert first.report.acks == Counter({"accepted": 96})
    assert second.report.acks == Counter({"rejected": 96})
    store.close()


def test_a_window_read_again_resends_the_spooled_packets(
    headend: HeadEndKeys, tmp_path: Path
) -> None:
    spool = ReadingSpool(tmp_path / "spool")
    (first, second), store = _passes(headend, tmp_path, spool, 2)
    assert isinstance(first, AgentPass)
    assert isinstance(second, AgentPass)
    assert first.report.acks == Counter({"accepted": 96})
    assert second.report.acks == Counter({"accepted": 96})  # duplicates of what is stored
    assert (first.report.readings_resent, second.report.readings_resent) == (0, 96)
    counters = store.counters()
    assert counters.get("stored") == 96
    assert not [k for k in counters if k.startswith("replayed")], counters
    store.close()


def test_a_crash_in_the_middle_of_sending_loses_and_doubles_nothing(
    headend: HeadEndKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_send = send_meter

    async def half_then_power_cut(link: Any, meter_id: str, packets: Any, *rest: Any) -> None:
        monkeypatch.setattr(runner, "send_meter", real_send)  # the restarted agent's is whole
        await real_send(link, meter_id, packets[: len(packets) // 2], *rest)
        raise SystemError("power cut in the middle of sending")

    monkeypatch.setattr(runner, "send_meter", half_then_power_cut)
    spool = ReadingSpool(tmp_path / "spool")
    (crashed, rerun), store = _passes(headend, tmp_path, spool, 2)
    assert isinstance(crashed, SystemError)
    assert isinstance(rerun, AgentPass)
    assert rerun.report.acks == Counter({"accepted": 96})
    assert rerun.report.readings_resent == 96
    counters = store.counters()
    assert counters.get("stored") == 96
    assert not [k for k in counters if k.startswith("replayed")], counters
    store.close()


def test_the_spool_keeps_a_file_a_day_and_drops_the_days_the_head_end_would_refuse(
    tmp_path: Path,
) -> None:
    from meterseal.agent.spool import DAY, KEEP_SECONDS, Spooled

    spool = ReadingSpool(tmp_path)
    day = T - T % DAY
    packets = {c: Spooled(c * 900, bytes([c % 256])) for c in range(day // 900 - 2, day // 900 + 2)}
    spool.save("M1", packets, T)
    assert sorted(p.name for p in (tmp_path / "M1").iterdir()) == [
        f"{day - DAY}.cbor", f"{day}.cbor"
    ]  # fmt: skip
    assert spool.load("M1", day, day + 900) == {c: s for c, s in packets.items() if c * 900 >= day}
    assert spool.load("M1", day - 900, day + 900) == packets  # both days, whole
    later = T + KEEP_SECONDS + DAY  # yesterday's packets are past the freshness window now
    spool.save("M1", {}, later)
    assert list((tmp_path / "M1").iterdir()) == []
    with pytest.raises(ConfigurationError):
        spool.load("../M1", day, day + 1)


def test_a_spool_that_cannot_be_written_or_read_skips_the_meter_as_a_spool_fault(
    headend: HeadEndKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = ReadingSpool(tmp_path / "full-spool")

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(full, "save", disk_full)
    (tmp_path / "full").mkdir()
    (unsaved,), store = _passes(headend, tmp_path / "full", full, 1)
    store.close()
    assert isinstance(unsaved, AgentPass)
    assert unsaved.report.skipped == Counter({"spool_fault": 1})  # not the driver's fault
    (meter,) = unsaved.meters
    assert "No space left on device" in meter.detail
    assert unsaved.report.acks == Counter()  # nothing goes out that is not spooled first

    damaged = ReadingSpool(tmp_path / "damaged-spool")
    day = tmp_path / "damaged-spool" / meter.meter_id / f"{PERIOD.start}.cbor"
    day.parent.mkdir(parents=True)
    day.write_bytes(b"\xff not a spool file")
    (tmp_path / "damaged").mkdir()
    (unread,), store = _passes(headend, tmp_path / "damaged", damaged, 1)
    store.close()
    assert isinstance(unread, AgentPass)
    assert unread.report.skipped == Counter({"spool_fault": 1})
    assert "is not an agent spool file" in unread.meters[0].detail


def test_packets_outside_the_window_are_left_out_and_days_dated_ahead_pruned(
    tmp_path: Path,
) -> None:
    from meterseal.agent.spool import AHEAD_SECONDS, DAY, KEEP_SECONDS, Saved, Spooled

    spool = ReadingSpool(tmp_path)
    day = T - T % DAY
    # Once a meter's clock (or the agent's) ran a year ahead: a pass then spooled that day.
    far = day + 365 * DAY
    assert spool.save("M1", {far // 900: Spooled(far, b"far")}, far) == Saved()
    soon = T + AHEAD_SECONDS  # still within a day ahead: kept (a clock a little ahead)
    packets = {
        1: Spooled(day - KEEP_SECONDS - DAY, b"stale"),  # the head-end refuses it as stale
        2: Spooled(T + AHEAD_SECONDS + 900, b"ahead"),  # a meter clock ahead by a day and more
        3: Spooled(day, b"today"),
        soon // 900: Spooled(soon, b"soon"),
    }
    # the year-ahead day is pruned (it would otherwise stay a year and more), and counted
    assert spool.save("M1", packets, T) == Saved(stale=1, future=1, future_days=1)
    soon_day = soon - soon % DAY
    assert sorted(p.name for p in (tmp_path / "M1").iterdir()) == sorted(
        {f"{day}.cbor", f"{soon_day}.cbor"}
    )
    assert spool.load("M1", day, soon + 1) == {c: packets[c] for c in (3, soon // 900)}
    assert spool.save("M1", {}, T) == Saved()  # nothing more to prune


def test_the_spool_keeps_what_keep_seconds_says_within_the_head_ends_window(
    tmp_path: Path,
) -> None:
    from meterseal.agent.spool import DAY, KEEP_SECONDS, Saved, Spooled
    from meterseal.config.sections import AgentSection

    assert AgentSection().spool_keep_seconds == KEEP_SECONDS  # the key's documented default
    for wrong in (0, -DAY, KEEP_SECONDS + 1):  # kept longer, the head-end would refuse them
        with pytest.raises(ConfigurationError, match="1 to 3456000 seconds"):
            ReadingSpool(tmp_path, wrong)
    spool = ReadingSpool(tmp_path, keep_seconds=2 * DAY)
    day = T - T % DAY
    packets = {c: Spooled(day - c * DAY, bytes([c])) for c in range(4)}
    # a day stays while any of its intervals is within the window: three days back goes
    assert spool.save("M1", packets, T) == Saved(stale=1)
    assert sorted(p.name for p in (tmp_path / "M1").iterdir()) == sorted(
        f"{day - c * DAY}.cbor" for c in range(3)
    )


def test_a_pass_counts_the_packets_its_spool_did_not_keep(
    headend: HeadEndKeys, tmp_path: Path
) -> None:
    from meterseal.agent.spool import DAY

    spool = ReadingSpool(tmp_path / "spool", keep_seconds=DAY)  # the period ended before that
    (done,), store = _passes(headend, tmp_path, spool, 1)
    store.close()
    assert isinstance(done, AgentPass)
    assert done.report.unspooled == Counter({"stale": 96})
    assert done.report.acks == Counter({"accepted": 96})  # within the head-end's own window
    assert not list((tmp_path / "spool").rglob("*.cbor"))
