"""The native fast path: repeats of a trusted call resumed without Python, and caught when
anything they depended on changed (the code in memory, the path's directories)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meterseal.integrity import native
from meterseal.integrity.auditlog import AuditLog
from meterseal.integrity.judgement import entry_fields
from meterseal.integrity.monitor import Monitor, MonitorResult
from tests.integrity.conftest import RUN_TIMEOUT, Lab
from tests.integrity.test_monitor import _code_address, _running_meter_pid

pytestmark = pytest.mark.usefixtures("monitor_ready")
PERSIST = "_start > main > persist_energy > write_energy_file"


@pytest.fixture(autouse=True)
def _native_loop() -> None:
    reason = native.available()
    if reason is not None:
        pytest.skip(reason)


def _persists(result: MonitorResult) -> list[tuple[object, ...]]:
    return [
        (m.behaviour.function, m.behaviour.obj, m.f_d, m.f_v, m.verdict, m.reason)
        for m in result.measurements
        if m.behaviour is not None and m.behaviour.function == PERSIST
    ]


def test_repeats_are_rechecked_natively_and_judged_like_the_first(lab: Lab, meter: Path) -> None:
    native_run = lab.monitor(lab.argv(meter, count=30, persist=1, name="native"))
    python_run = lab.monitor(lab.argv(meter, count=30, persist=1, name="python"), native=False)
    for result in (native_run, python_run):
        assert result.malicious is None
        assert result.outcome.exit_code == 0
    # 31 energy-register writes (one per interval and the last): the first ones fill the
    # function's history, then every repeat is re-checked and resumed by the native loop.
    assert native_run.outcome.rechecked >= 25
    assert python_run.outcome.rechecked == 0
    assert native_run.outcome.trapped == python_run.outcome.trapped
    assert _persists(native_run) == _persists(python_run)
    assert len(_persists(native_run)) == 31
    logged = lab.audit().entries
    assert len(logged) == len(native_run.measurements) + len(python_run.measurements)


@contextmanager
def _monitoring(lab: Lab, argv: list[str]) -> Iterator[tuple[Monitor, list[MonitorResult]]]:
    """The monitor on `argv` in a thread of its own (its tracer), until the program ends."""
    log = AuditLog(lab.log_path, lab.key)
    monitor = Monitor(argv, lab.key, log)
    done: list[MonitorResult] = []
    devnull = os.open(os.devnull, os.O_WRONLY)

    def watch() -> None:
        done.append(monitor.run(stdout=devnull, timeout=RUN_TIMEOUT))

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        yield monitor, done
    finally:
        thread.join(RUN_TIMEOUT + 10)
        log.close()
        os.close(devnull)


def _until_rechecked(monitor: Monitor, repeats: int) -> None:
    """Wait until the native loop has resumed `repeats` energy-register writes."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        judged = [m for m in list(monitor.result.measurements) if m.behaviour is not None]
        if sum(m.behaviour.function == PERSIST for m in judged if m.behaviour) >= repeats + 3:
            return
        time.sleep(0.05)
    raise AssertionError("the native loop never took over the repeats")


def test_a_register_directory_swapped_for_a_link_is_judged_afresh(lab: Lab, meter: Path) -> None:
    argv = lab.argv(meter, interval_ms=20, count=500, persist=1, name="swap")
    registers = Path(argv[2])
    with _monitoring(lab, argv) as (monitor, done):
        _until_rechecked(monitor, 5)
        # Redirect the meter's register writes: same path string, another directory.
        registers.rename(registers.with_name("elsewhere"))
        registers.symlink_to(registers.with_name("elsewhere"))
    result = done[0]
    assert result.outcome.rechecked >= 5
    bad = result.malicious
    assert bad is not None
    assert bad.behaviour is not None
    assert "behaviour not in the trace (f_d)" in bad.reason
    assert bad.behaviour.obj.endswith("/elsewhere/energy.reg")
    assert result.outcome.killed


def test_code_patched_after_the_native_loop_took_over_is_caught(lab: Lab, meter: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("writing another process's /proc/PID/mem needs root (CAP_SYS_PTRACE)")
    argv = lab.argv(meter, interval_ms=20, count=500, persist=1, name="patch")
    with _monitoring(lab, argv) as (monitor, done):
        _until_rechecked(monitor, 5)
        pid = monitor.result.measurements[0].pid
        address = _code_address(pid, meter, "accumulate")
        with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:  # `accumulate` returns at once
            mem.seek(address)
            mem.write(b"\xc3")
    result = done[0]
    assert result.outcome.rechecked >= 5
    bad = result.malicious
    assert bad is not None
    assert bad.trigger == "behaviour"
    assert bad.f_v is False
    assert "code in memory differs from the file" in bad.reason
    logged = entry_fields(lab.audit().entries[-1])  # the log verifies, and ends with it
    assert logged["verdict"] == "malicious"
    assert "code in memory differs" in logged["reason"]


def test_ctrl_c_stops_the_monitor_and_the_program_while_the_native_loop_waits(
    lab: Lab, meter: Path
) -> None:
    key_dir = lab.root / "keys"
    lab.key.save(key_dir)
    argv = lab.argv(meter, interval_ms=20, count=2000, persist=1, name="ctrl-c")
    command = [sys.executable, "-m", "meterseal", "integrity", "monitor", "--key-dir"]
    command += [str(key_dir), "--log", str(lab.log_path), "--period", "0", "--", *argv]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as monitor:
        pid = _running_meter_pid(monitor, Path(argv[2]))
        time.sleep(0.5)  # the repeats are resumed natively by now: Python sits in no wait
        monitor.send_signal(signal.SIGINT)
        monitor.wait(timeout=10)
    assert monitor.returncode != 0
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert lab.audit().heads  # closed with a signed head over what was judged
