"""Builds the meter program (meter_c/meter.c, shipped as package data) with gcc.

Built for measurability: frame pointers and no sibling calls keep every function of the
program a frame on the stack, so a behaviour is attributed to the function (and calling
context) it came from, as the paper's per-function traces need.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from meterseal.integrity.errors import IntegrityError

VARIANTS = ("open", "shell", "energy", "connect", "execmem")
CFLAGS = (
    "-O2",
    "-Wall",
    "-Wextra",
    "-fno-omit-frame-pointer",
    "-fno-optimize-sibling-calls",
)
TRIGGER_WATTS = 31337  # a sensor value that wakes a variant's dormant attack (see meter.c)
GCC_SECONDS = 120
SENSOR_FILE = "sensor.txt"  # the example inputs of the README's and docs' command lines
REGISTER_DIR = "regs"
# A household's day in quarter hours (watts): night standby, a morning and an evening peak.
_DAY_PROFILE = (120, 110, 105, 100, 140, 900, 1400, 650, 380, 350, 420, 760, 500, 450, 1800, 2400)


def source() -> Path:
    """Path of meter.c inside the installed package."""
    return Path(str(resources.files("meterseal.integrity") / "meter_c" / "meter.c"))


def build_meter(out: Path, variant: str | None = None, *, cc: str = "gcc") -> Path:
    """Compile the meter (or one attack variant) to `out`; IntegrityError if gcc fails."""
    if variant is not None and variant not in VARIANTS:
        raise IntegrityError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    compiler = shutil.which(cc)
    if compiler is None:
        raise IntegrityError(f"{cc} not found: install gcc (apt-get install gcc)")
    flags = [*CFLAGS] + ([f"-DMETER_VARIANT_{variant.upper()}"] if variant else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    compile_c(compiler, flags, source(), out, IntegrityError)
    return out


def write_example_inputs(directory: Path) -> tuple[Path, Path, bool]:
    """Write a sensor source (a day of quarter-hour watts) and an empty register directory.

    Returns (sensor file, register directory, whether the sensor file was written): an
    existing sensor file is kept, since it may be the operator's own input.
    """
    directory.mkdir(parents=True, exist_ok=True)
    registers = directory / REGISTER_DIR
    registers.mkdir(exist_ok=True)
    sensor = directory / SENSOR_FILE
    if sensor.exists():
        return sensor, registers, False
    # 96 quarter hours: each of the 16 profile steps lasts 6 of them, with a small ripple.
    lines = [f"{_DAY_PROFILE[i // 6] + (i * 37) % 23}\n" for i in range(96)]
    sensor.write_text("".join(lines))
    return sensor, registers, True


def compile_c(
    compiler: str, flags: Sequence[str], src: Path, out: Path, error: type[IntegrityError]
) -> None:
    """Run `compiler flags -o out src`; `error` with gcc's message if it fails or hangs."""
    try:
        subprocess.run(  # noqa: S603 - fixed compiler and flags, our own source
            [compiler, *flags, "-o", str(out), str(src)],
            check=True,
            capture_output=True,
            timeout=GCC_SECONDS,
        )
    except subprocess.CalledProcessError as exc:
        raise error(f"gcc failed on {src.name}: {exc.stderr.decode(errors='replace')}") from None
    except subprocess.TimeoutExpired:
        raise error(f"gcc did not finish {src.name}") from None
