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
