"""Which function of the program made a system call: unwinding the stopped stack with CFI.

The call is stopped inside a library (libc's wrapper, or deeper). Each ELF file's .eh_frame
says, for any instruction, where the caller's frame and return address are; .eh_frame_hdr
indexes it, so only the few entries on the way are decoded (pyelftools). Unwinding from the
stopped registers up to the first frame in the program gives the calling function exactly,
whatever stale return addresses lie on the stack. Unwinding ends at a frame without CFI.
"""

from __future__ import annotations

import bisect
import io
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from elftools.common.exceptions import ELFError
from elftools.dwarf.callframe import FDE, CallFrameInfo, CFARule, RegisterRule
from elftools.dwarf.structs import DWARFStructs
from elftools.elf.elffile import ELFFile

RSP, RBP, RA = 7, 6, 16  # DWARF register numbers on x86-64
MAX_FRAMES = 64
_ENCODINGS = {0x03: ("<I", 4), 0x0B: ("<i", 4), 0x1B: ("<i", 4), 0x3B: ("<i", 4)}


@dataclass(frozen=True, slots=True)
class Rule:
    """How to find the caller's frame at one instruction."""

    cfa_reg: int
    cfa_offset: int
    ra_offset: int | None  # where the return address is saved, relative to the CFA
    rbp_offset: int | None  # where the caller's rbp is saved (None: rbp is unchanged)


class FrameTable:
    """The unwinding rules of one ELF file, by link-time address."""

    def __init__(self, data: bytes) -> None:
        self._starts: list[int] = []
        self._fdes: list[int] = []
        self._cfi: CallFrameInfo | None = None
        self.link_base = 0
        try:
            elf = ELFFile(io.BytesIO(data))
            loads = [s["p_vaddr"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            self.link_base = min(loads, default=0) & ~0xFFF
            hdr, frames = (
                elf.get_section_by_name(".eh_frame_hdr"),
                elf.get_section_by_name(".eh_frame"),
            )
            if hdr is None or frames is None:
                return
            self._index(hdr.data(), hdr["sh_addr"], frames["sh_addr"])
            structs = DWARFStructs(
                little_endian=elf.little_endian, dwarf_format=32, address_size=elf.elfclass // 8
            )
            self._cfi = CallFrameInfo(
                io.BytesIO(frames.data()), frames["sh_size"], frames["sh_addr"], structs, True
            )
        except (ELFError, ValueError, struct.error, KeyError):
            self._starts, self._fdes, self._cfi = [], [], None
        self.rule = lru_cache(maxsize=4096)(self._rule)

    def _index(self, hdr: bytes, hdr_addr: int, frames_addr: int) -> None:
        version, ptr_enc, count_enc, table_enc = hdr[0], hdr[1], hdr[2], hdr[3]
        if version != 1 or ptr_enc not in _ENCODINGS or count_enc not in _ENCODINGS:
            return
        if table_enc != 0x3B:  # datarel sdata4: what binutils' ld writes
            return
        at = 4 + _ENCODINGS[ptr_enc][1]
        count = struct.unpack_from(_ENCODINGS[count_enc][0], hdr, at)[0]
        at += _ENCODINGS[count_enc][1]
        pairs = struct.unpack_from(f"<{2 * count}i", hdr, at)
        self._starts = [hdr_addr + pairs[i] for i in range(0, len(pairs), 2)]
        self._fdes = [hdr_addr + pairs[i] - frames_addr for i in range(1, len(pairs), 2)]

    def _rule(self, pc: int) -> Rule | None:
        i = bisect.bisect_right(self._starts, pc) - 1
        if i < 0 or self._cfi is None:
            return None
        try:
            # One FDE at a time through pyelftools' own parser (pinned version: see pyproject).
            fde = self._cfi._parse_entry_at(self._fdes[i])
            if not isinstance(fde, FDE):
                return None
            if not fde["initial_location"] <= pc < fde["initial_location"] + fde["address_range"]:
                return None
            rows = fde.get_decoded().table
        except (ELFError, ValueError, struct.error, KeyError, AttributeError, TypeError):
            return None
        row = None
        for candidate in rows:
            if candidate["pc"] > pc:
                break
            row = candidate
        return None if row is None else _rule_of(row)


def _rule_of(row: dict[object, object]) -> Rule | None:
    cfa = row.get("cfa")
    if not isinstance(cfa, CFARule) or cfa.reg is None or cfa.offset is None:
        return None  # a DWARF expression: not needed for the code we unwind
    return Rule(cfa.reg, cfa.offset, _offset(row.get(RA)), _offset(row.get(RBP)))


def _offset(rule: object) -> int | None:
    if isinstance(rule, RegisterRule) and rule.type == RegisterRule.OFFSET:
        return int(rule.arg)  # type: ignore[arg-type]
    return None


@dataclass(frozen=True, slots=True)
class Module:
    """A loaded ELF file: its frame table and load bias."""

    path: str
    table: FrameTable
    bias: int


def frames(
    read_word: Callable[[int], int | None],
    module_at: Callable[[int], Module | None],
    rip: int,
    rsp: int,
    rbp: int,
) -> Iterator[int]:
    """Program counters from the stopped instruction outwards (return addresses after it)."""
    pc, regs, first = rip, {RSP: rsp, RBP: rbp}, True
    for _ in range(MAX_FRAMES):
        yield pc
        module = module_at(pc)
        if module is None:
            return
        # A return address points after its call: look the call itself up.
        rule = module.table.rule(pc - module.bias - (0 if first else 1))
        if rule is None or rule.ra_offset is None or rule.cfa_reg not in regs:
            return
        cfa = regs[rule.cfa_reg] + rule.cfa_offset
        ra = read_word(cfa + rule.ra_offset)
        if not ra:
            return
        if rule.rbp_offset is not None:
            saved = read_word(cfa + rule.rbp_offset)
            if saved is None:
                return
            regs[RBP] = saved
        regs[RSP] = cfa
        pc, first = ra, False
