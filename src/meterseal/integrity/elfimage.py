"""The parts of an ELF file the scheme needs, read with pyelftools from bytes (sans-IO).

HV (section 3.3 of the paper) is the SHA-256 of the file except the content of the added
section. At run time the monitor measures the process too: `image_hv` puts the bytes of the
read-only load segments as they are in the process's memory over the file's bytes before
hashing, so code patched in memory after the launch changes newHV just as a patched file does.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from meterseal.integrity.errors import ExtractionError

SECTION_NAME = ".meterseal.integrity"
PF_X, PF_W = 0x1, 0x2


@dataclass(frozen=True, slots=True)
class Segment:
    """A PT_LOAD segment: where its bytes are in the file and in the address space."""

    offset: int
    vaddr: int
    filesz: int
    flags: int

    @property
    def measured(self) -> bool:
        """Read-only segments (code, constants) must stay byte-equal to the file in memory."""
        return not self.flags & PF_W and self.filesz > 0


@dataclass(frozen=True, slots=True)
class ElfLayout:
    """Load segments, the integrity section (if any) and the function symbols of a file."""

    position_independent: bool
    segments: tuple[Segment, ...]
    section: tuple[int, int] | None  # (file offset, size) of the integrity section
    starts: tuple[int, ...]  # function start addresses, sorted
    ends: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, data: bytes) -> ElfLayout:
        """The layout of the ELF file `data`; ExtractionError if it is not a sound ELF file."""
        try:
            elf = ELFFile(io.BytesIO(data))
            pie = elf.header["e_type"] == "ET_DYN"
            segments = tuple(
                Segment(s["p_offset"], s["p_vaddr"], s["p_filesz"], s["p_flags"])
                for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD"
            )
            section = elf.get_section_by_name(SECTION_NAME)
            where = None if section is None else (section["sh_offset"], section["sh_size"])
            functions = sorted(_functions(elf))
        except (ELFError, ValueError, KeyError, OSError, AttributeError) as exc:
            raise ExtractionError(f"not a readable ELF file: {exc}") from None
        if not segments:
            raise ExtractionError("the ELF file has no loadable segment")
        if where is not None:
            _check_section(where, segments, len(data))
        return cls(
            pie,
            segments,
            where,
            tuple(f[0] for f in functions),
            tuple(f[1] for f in functions),
            tuple(f[2] for f in functions),
        )

    @property
    def link_base(self) -> int:
        """The page-aligned address the first load segment is linked at."""
        return min(s.vaddr for s in self.segments) & ~0xFFF

    def function_at(self, vaddr: int) -> str | None:
        """The function whose code holds link-time address `vaddr`, if a symbol says so."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i >= 0 and vaddr < self.ends[i]:
            return self.names[i]
        return None

    def code_segment(self, vaddr: int) -> Segment | None:
        """The executable segment holding link-time address `vaddr`, if any."""
        for s in self.segments:
            if s.flags & PF_X and s.vaddr <= vaddr < s.vaddr + s.filesz:
                return s
        return None


@functools.lru_cache(maxsize=16)
def layout_of(data: bytes) -> ElfLayout:
    """`ElfLayout.parse(data)`, kept by content: a program file is parsed once per process."""
    return ElfLayout.parse(data)


def _functions(elf: ELFFile) -> list[tuple[int, int, str]]:
    table = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
    if table is None or not hasattr(table, "iter_symbols"):
        return []
    found = {}
    for symbol in table.iter_symbols():
        if symbol["st_info"]["type"] == "STT_FUNC" and symbol["st_value"] and symbol.name:
            start = symbol["st_value"]
            found[start] = (start, start + max(symbol["st_size"], 1), symbol.name)
    return list(found.values())


def _check_section(where: tuple[int, int], segments: tuple[Segment, ...], size: int) -> None:
    offset, length = where
    if offset + length > size:
        raise ExtractionError("the integrity section runs past the end of the file")
    for s in segments:
        if offset < s.offset + s.filesz and s.offset < offset + length:
            raise ExtractionError("the integrity section overlaps a loaded segment")


def section_bytes(data: bytes, layout: ElfLayout) -> bytes:
    """The integrity section's content; ExtractionError when the file has none."""
    if layout.section is None:
        raise ExtractionError(f"no {SECTION_NAME} section: the trace cannot be extracted")
    offset, length = layout.section
    return data[offset : offset + length]


def hv(data: bytes, layout: ElfLayout) -> bytes:
    """HV: SHA-256 over the file except the integrity section's content."""
    digest = hashlib.sha256()
    if layout.section is None:
        digest.update(data)
    else:
        offset, length = layout.section
        digest.update(data[:offset])
        digest.update(data[offset + length :])
    return digest.digest()


def image_hv(data: bytes, layout: ElfLayout, memory: Mapping[Segment, bytes]) -> bytes:
    """newHV of a process: HV of the file with each measured segment as found in memory."""
    image = bytearray(data)
    for segment, found in memory.items():
        if len(found) != segment.filesz:
            raise ValueError(f"segment at {segment.vaddr:#x} read short ({len(found)} bytes)")
        image[segment.offset : segment.offset + segment.filesz] = found
    return hv(bytes(image), layout)
