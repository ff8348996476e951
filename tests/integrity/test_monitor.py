"""The monitor on real processes: benign runs never killed, each attack caught and killed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterseal.integrity.build import TRIGGER_WATTS
from meterseal.integrity.elfimage import SECTION_NAME, ElfLayout
from meterseal.integrity.judgement import Verdict, entry_fields
from meterseal.integrity.monitor import MonitorResult
from tests.integrity.conftest import Lab, sensor_values

pytestmark = pytest.mark.usefixtures("monitor_ready")


def _killed_for(result: MonitorResult, lab: Lab, reason: str) -> dict[str, object]:
    """Assert the run was killed as malicious for `reason`, and that the log says so."""
    assert result.outcome.killed, result.outcome
    assert result.outcome.exit_code is None
    assert result.outcome.signal == 9
    bad = result.malicious
    assert bad is not None
    assert reason in bad.reason, bad
    entries = [entry_fields(e) for e in lab.audit().entries]
    logged = entries[-1]
    assert logged["verdict"] == Verdict.MALICIOUS.value
    assert reason in logged["reason"]
    return logged


def test_benign_runs_with_varied_input_are_never_killed(lab: Lab, meter: Path) -> None:
    received_before = 0
    for run in range(20):
        argv = lab.argv(
            meter,
            sensor=sensor_values(run, 1 + run * 7),
            count=1 + (run * 13) % 40,
            persist=2 + run % 9,
            name=f"benign-{run}",
        )
        result = lab.monitor(argv)
        assert result.malicious is None, result.malicious
        assert result.outcome.exit_code == 0
        assert not result.outcome.killed
        assert all(m.f_d and m.f_v for m in result.measurements if m.trigger == "behaviour")
        # It did its job: the energy register holds what it printed.
        registers = Path(argv[2])
        assert (registers / "energy.reg").read_text().strip().isdigit()
        received_before += 1
    entries = [entry_fields(e) for e in lab.audit().entries]
    assert {e["verdict"] for e in entries} == {"trusted"}
    assert sum(e["trigger"] == "launch" for e in entries) == received_before


def test_the_trace_names_functions_and_launch_values(lab: Lab, meter: Path) -> None:
    from tests.integrity.conftest import trace_of

    functions = trace_of(meter).functions
    assert ("open_write", "${arg2}/energy.reg") in functions[
        "_start > main > persist_energy > write_energy_file"
    ].allowed
    assert ("connect", "inet:${arg3}") in functions["_start > main > connect_headend"].allowed
    assert ("exec", "${exe}") in functions["<launch>"].allowed


def test_a_byte_patched_in_the_binary_on_disk_is_caught(lab: Lab, meter: Path) -> None:
    data = bytearray(meter.read_bytes())
    code = next(s for s in ElfLayout.parse(bytes(data)).segments if s.flags & 1)
    data[code.offset + code.filesz // 2] ^= 0xFF  # in the code, far from the section
    meter.write_bytes(bytes(data))
    result = lab.monitor(lab.argv(meter))
    logged = _killed_for(result, lab, "newHV differs from HV")
    assert "the program file differs" in str(logged["reason"])
    assert logged["trigger"] == "launch"  # caught before its first instruction ran


def test_a_tampered_trace_section_fails_dsig(lab: Lab, meter: Path) -> None:
    data = meter.read_bytes()
    offset, size = ElfLayout.parse(data).section or (0, 0)
    at = data.index(b"energy.reg", offset, offset + size)
    meter.write_bytes(data[:at] + b"energy.REG" + data[at + 10 :])
    result = lab.monitor(lab.argv(meter))
    _killed_for(result, lab, "DSig does not verify")


def test_a_stripped_trace_section_fails_extraction(lab: Lab, meter: Path) -> None:
    stripped = lab.root / "stripped"
    subprocess.run(
        ["objcopy", "--remove-section", SECTION_NAME, str(meter), str(stripped)], check=True
    )
    result = lab.monitor(lab.argv(stripped))
    _killed_for(result, lab, "trace extraction failed")


@pytest.mark.parametrize(
    ("variant", "action", "obj"),
    [
        ("open", "open_write", "${arg2}/firmware.bin"),
        ("shell", "spawn", "process"),
        ("energy", "open_write", "${arg2}/energy.reg"),
        ("connect", "connect", "inet:127.0.0.1:4444"),
        ("execmem", "protect_exec", "anonymous"),
    ],
)
@pytest.mark.parametrize("native", [True, False], ids=["native-loop", "python-loop"])
def test_an_unexpected_behaviour_variant_is_caught(
    lab: Lab, builds: dict[str, Path], variant: str, action: str, obj: str, native: bool
) -> None:
    binary = lab.trusted_copy(builds[variant], f"meter-{variant}")
    # Its trusted runs never saw the trigger; now the sensor delivers it, after enough
    # energy-register writes (one per interval) for the native loop to resume the repeats.
    sensor = "120\n" * 12 + f"{TRIGGER_WATTS}\n80\n"
    argv = lab.argv(binary, sensor=sensor, count=16, persist=1)
    result = lab.monitor(argv, native=native)
    assert (result.outcome.rechecked > 0) is native
    logged = _killed_for(result, lab, "behaviour not in the trace")
    assert (logged["action"], logged["object"]) == (action, obj)
    assert logged["f_d"] is False
    assert logged["f_v"] is None
    registers = Path(argv[2])
    assert not (registers / "firmware.bin").exists()  # stopped before the call ran


def test_the_energy_rollback_is_told_apart_by_its_function(
    lab: Lab, builds: dict[str, Path]
) -> None:
    binary = lab.trusted_copy(builds["energy"], "meter-energy")
    result = lab.monitor(lab.argv(binary, sensor=f"{TRIGGER_WATTS}\n", count=3))
    bad = result.malicious
    assert bad is not None
    assert bad.behaviour is not None
    assert bad.behaviour.function.endswith("on_trigger > rollback_energy > write_energy_file")


ATTACKER = """
import sys
pid, address, patch = int(sys.argv[1]), int(sys.argv[2], 16), bytes.fromhex(sys.argv[3])
with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
    mem.seek(address)
    mem.write(patch)
"""


def _running_meter_pid(monitor: subprocess.Popen[bytes], registers: Path) -> int:
    """The pid of the meter the monitor process started, once it is past its start."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = Path(f"/proc/{monitor.pid}/task/{monitor.pid}/children").read_text().split()
        if children and (registers / "display.reg").exists():
            return int(children[0])
        if monitor.poll() is not None:
            raise AssertionError(f"the monitor ended early: {monitor.returncode}")
        time.sleep(0.05)
    raise AssertionError("the meter did not start")


def _code_address(pid: int, binary: Path, function: str) -> int:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(binary, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection), "the meter's program has no symbols"
        symbols = symtab.get_symbol_by_name(function)
    assert symbols, f"no symbol {function}"
    offset: int = symbols[0]["st_value"]
    inode = os.stat(binary).st_ino
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if int(fields[4]) == inode and int(fields[2], 16) == 0:
            return int(fields[0].split("-")[0], 16) + offset
    raise AssertionError("the meter's program is not mapped")


@pytest.mark.parametrize("period", [0.0, 0.2], ids=["at-next-behaviour", "periodic"])
def test_code_patched_in_the_running_process_is_caught(
    lab: Lab, meter: Path, period: float
) -> None:
    if os.geteuid() != 0:
        pytest.skip("writing another process's /proc/PID/mem needs root (CAP_SYS_PTRACE)")
    key_dir = lab.root / "keys"
    lab.key.save(key_dir)
    # Slow enough to be patched mid-run; without the timer the energy register write (every
    # 4 intervals) is the modification behaviour that triggers the measurement.
    # With the timer, no energy-register write comes in the run: only the timer can see it.
    persist = 1000 if period else 4
    argv = lab.argv(meter, interval_ms=50, count=200, persist=persist, name="toctou")
    command = [
        sys.executable,
        "-m",
        "meterseal",
        "integrity",
        "monitor",
        "--key-dir",
        str(key_dir),
        "--log",
        str(lab.log_path),
        "--period",
        str(period),
        "--",
        *argv,
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as monitor:
        pid = _running_meter_pid(monitor, Path(argv[2]))
        # The attacker, another process: `accumulate` now returns at once (energy theft).
        address = _code_address(pid, meter, "accumulate")
        subprocess.run([sys.executable, "-c", ATTACKER, str(pid), f"{address:x}", "c3"], check=True)
        output, _ = monitor.communicate(timeout=30)
    assert monitor.returncode == 3, output.decode()
    entries = [entry_fields(e) for e in lab.audit().entries]
    logged = entries[-1]
    assert logged["verdict"] == "malicious"
    assert "code in memory differs from the file" in logged["reason"]
    assert logged["trigger"] == ("periodic" if period else "behaviour")
    assert logged["f_v"] is False
    assert shutil.which("objcopy")  # the binary on disk was never touched: still verifies
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "meterseal",
            "integrity",
            "verify",
            str(meter),
            "--key-dir",
            str(key_dir),
        ],
        capture_output=True,
    )
    assert verify.returncode == 0, verify.stdout
