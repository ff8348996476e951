"""What the native fast path re-checks: realpath without links, the path argument, encodings."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.integrity import native
from meterseal.integrity.behaviour import Placeholders
from meterseal.integrity.recipe import NO_ARGUMENT, ImageCheck, Recipe, lexical_realpath
from meterseal.integrity.syscalls import AT_FDCWD, TRAPS

_NAMES = st.sampled_from(["a", "b", "missing", ".", "..", "", "c.reg"])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directories a/b and a file a/b/c.reg, no symbolic link anywhere."""
    root = tmp_path_factory.mktemp("tree").resolve()
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c.reg").write_text("0\n")
    return root


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_NAMES, max_size=7), trailing=st.booleans())
def test_lexical_realpath_is_realpath_without_links(
    tree: Path, parts: list[str], trailing: bool
) -> None:
    path = str(tree) + "/" + "/".join(parts) + ("/" if trailing else "")
    looked_at: list[str] = []
    lstat = os.lstat

    def recording_lstat(p: str) -> os.stat_result:
        looked_at.append(p)
        return lstat(p)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "lstat", recording_lstat)
        expected = os.path.realpath(path)
    resolved, components = lexical_realpath(path)
    assert resolved == expected
    assert list(components) == looked_at  # the fast path lstat()s what realpath looked at


class _Recording:
    """A tracee whose every argument points at a relative path string; notes what is read."""

    tgid = 100

    def __init__(self) -> None:
        self.strings: list[int] = []
        self.links: list[str] = []
        self.other = False

    def read_bytes(self, address: int, size: int) -> bytes:
        self.other = True
        return b"\x41" * size  # flags that ask for writing, an address family, ...

    def read_string(self, address: int) -> str:
        self.strings.append(address)
        return f"dir/file{address}"

    def fd_path(self, fd: int) -> str:
        self.links.append(f"fd:{fd}")
        return "/srv/at"

    def cwd(self) -> str:
        self.links.append("cwd")
        return "/srv/cwd"

    def mapping_at(self, address: int) -> str:
        self.other = True
        return "anonymous"


@pytest.mark.parametrize("dirfd", [AT_FDCWD, 7])
def test_each_trap_that_reads_one_path_says_which_argument_it_is(dirfd: int) -> None:
    placeholders = Placeholders.of_launch("/bin/true", [], "/")
    for index, trap in enumerate(TRAPS):
        view = _Recording()
        args = [dirfd & 0xFFFFFFFF, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000]
        obj = trap.decode(args, view, placeholders)
        single_path = obj is not None and len(view.strings) == 1 and not view.other
        if trap.path is None:
            assert not single_path, (index, trap.syscall)
            continue
        dirfd_arg, path_arg = trap.path
        assert single_path, trap.syscall
        assert view.strings == [args[path_arg]], trap.syscall
        uses_cwd = dirfd_arg == NO_ARGUMENT or dirfd == AT_FDCWD
        assert view.links == (["cwd"] if uses_cwd else [f"fd:{dirfd}"]), trap.syscall


def test_recipes_encode_to_the_layout_the_loop_reads() -> None:
    recipe = Recipe(
        3, 1234, 1, 0, 0x401000, 0x7FFE0000, 0x7FFE0100, 1, 0, AT_FDCWD,
        b"regs/energy.reg", "/proc/1234/cwd", "/srv/meter", ("/srv", "/srv/meter"),
        ((0x7FFE0008, 0x401234), (0x7FFE0108, None)),
    )  # fmt: skip
    encoded = recipe.encode()
    head = struct.unpack_from("<iiiiQQQiii", encoded)
    assert head == (3, 1234, 1, 0, 0x401000, 0x7FFE0000, 0x7FFE0100, 1, 0, AT_FDCWD)
    assert encoded.endswith(struct.pack("<QQB", 0x7FFE0108, 0, 0))
    image = ImageCheck(1234, (1, 2, 3, 4, 5), ((0x400000, b"\x7fELF"),))
    assert image.encode().endswith(struct.pack("<QI", 0x400000, 4) + b"\x7fELF")


def test_the_native_loop_takes_recipes_and_refuses_malformed_ones() -> None:
    reason = native.available()
    if reason is not None:
        pytest.skip(reason)
    fastpath = native.FastPath()
    try:
        recipe = Recipe(
            0, 99, 0, 0, 1, 2, 3, 1, 0, AT_FDCWD, b"/srv/x", "", "", ("/srv", "/srv/x"), ()
        )
        fastpath.add_recipe(recipe.encode())
        fastpath.add_image(ImageCheck(99, (1, 2, 3, 4, 5), ((0x1000, b"code"),)).encode())
        with pytest.raises(ValueError, match="refused a recipe"):
            fastpath.add_recipe(recipe.encode()[:-3])  # cut short
        with pytest.raises(ValueError, match="refused a recipe"):
            fastpath.add_recipe(recipe.encode() + b"x")  # trailing bytes
        with pytest.raises(ValueError, match="refused an image"):
            fastpath.add_image(b"\x00" * 7)
        fastpath.drop_slot(99, 0)
        fastpath.forget(99)
        assert fastpath.drain() == []
        assert fastpath.hits == fastpath.passed == 0
    finally:
        fastpath.close()
