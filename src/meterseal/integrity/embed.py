"""Offline phase, second half: embed (HV, T, DSig) into the program as a read-only ELF section.

binutils' objcopy does the ELF work: it adds a section of the final size filled with zeros
(flags readonly, contents; not alloc, so it is never loaded and costs the meter no memory),
HV is computed over that file except the section's content, and objcopy's --update-section
writes the signed content in. The result is re-read and refused unless HV still holds, so a
layout that moved would never be shipped.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from meterseal.integrity.elfimage import SECTION_NAME, ElfLayout, hv, section_bytes
from meterseal.integrity.errors import EmbedError
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.section import (
    IntegritySection,
    capacity_for,
    encode,
    extract_verified,
)
from meterseal.integrity.trace import TraceModel

OBJCOPY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Embedded:
    """What `embed` wrote: the file, its HV and the section's size."""

    path: Path
    hv: bytes
    section_size: int


def objcopy() -> str:
    """Path of binutils' objcopy; EmbedError when it is missing."""
    found = shutil.which("objcopy")
    if found is None:
        raise EmbedError("objcopy not found: install binutils (apt-get install binutils)")
    return found


def _objcopy(*args: str | Path) -> None:
    try:
        subprocess.run(  # noqa: S603 - fixed tool, arguments are paths we made
            [objcopy(), *map(str, args)],
            check=True,
            capture_output=True,
            timeout=OBJCOPY_SECONDS,
        )
    except subprocess.CalledProcessError as exc:
        raise EmbedError(f"objcopy failed: {exc.stderr.decode(errors='replace').strip()}") from None
    except subprocess.TimeoutExpired:
        raise EmbedError("objcopy did not finish") from None


def embed(binary: Path, trace: TraceModel, key: PlatformKey, out: Path | None = None) -> Embedded:
    """Add the signed integrity section to `binary` (written to `out`, default in place)."""
    target = out or binary
    data = binary.read_bytes()
    layout = ElfLayout.parse(data)
    capacity = capacity_for(trace, key)
    with tempfile.TemporaryDirectory(prefix="meterseal-embed-") as tmp:
        work = Path(tmp)
        source = work / "source"
        if layout.section is not None:  # re-embedding after a new trace: start from the code
            _objcopy("--remove-section", SECTION_NAME, binary, source)
        else:
            shutil.copyfile(binary, source)
        placeholder, content_file = work / "placeholder", work / "content"
        placeholder.write_bytes(bytes(capacity))
        staged, final = work / "staged", work / "final"
        _objcopy(
            "--add-section",
            f"{SECTION_NAME}={placeholder}",
            "--set-section-flags",
            f"{SECTION_NAME}=readonly,contents",
            source,
            staged,
        )
        staged_data = staged.read_bytes()
        staged_layout = ElfLayout.parse(staged_data)
        value = hv(staged_data, staged_layout)
        content = encode(IntegritySection(value, trace, key.label), key, capacity)
        content_file.write_bytes(content)
        _objcopy("--update-section", f"{SECTION_NAME}={content_file}", staged, final)
        _check(final.read_bytes(), value, content, key)
        final.chmod(binary.stat().st_mode & 0o7777)
        shutil.move(final, target)
    return Embedded(target, value, capacity)


def _check(data: bytes, value: bytes, content: bytes, key: PlatformKey) -> None:
    layout = ElfLayout.parse(data)
    if section_bytes(data, layout) != content or hv(data, layout) != value:
        raise EmbedError("objcopy moved the file's layout while filling the section in")
    extract_verified(content, key)


def measure_file(data: bytes, key: PlatformKey) -> tuple[IntegritySection, bytes]:
    """Extract and verify the section of a program file; the section and the file's newHV."""
    layout = ElfLayout.parse(data)
    section = extract_verified(section_bytes(data, layout), key)
    return section, hv(data, layout)
