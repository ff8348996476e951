"""liberasurecode through ctypes: fragments byte for byte pyeclib's, both ways decodable."""

from __future__ import annotations

import contextlib
import ctypes.util
import gc
import itertools
import struct
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyeclib.ec_iface import ECDriver

from meterseal.errors import ConfigurationError, KvsError
from meterseal.kvs import erasure_native
from meterseal.kvs.erasure import Coder
from meterseal.kvs.erasure_native import HEADER_BYTES, NativeCodec, library_path, load

SHAPES = [(1, 1), (2, 1), (3, 2), (4, 2), (6, 2)]
BACKEND = "isa_l_rs_vand"


def pair(k: int, m: int) -> tuple[NativeCodec, ECDriver]:
    return NativeCodec(k, m, BACKEND), ECDriver(k=k, m=m, ec_type=BACKEND)


@settings(max_examples=40)
@given(st.sampled_from(SHAPES), st.binary(min_size=1, max_size=9000))
def test_fragments_are_pyeclibs_and_each_decodes_the_others(
    shape: tuple[int, int], data: bytes
) -> None:
    k, m = shape
    native, driver = pair(k, m)
    ours, theirs = native.encode(data), driver.encode(data)
    assert ours == theirs
    assert native.encode(memoryview(bytearray(data))) == theirs  # a reused buffer's view
    for kept in itertools.combinations(range(k + m), k):
        assert native.decode([theirs[i] for i in kept]) == data
        assert driver.decode([ours[i] for i in kept]) == data


@settings(max_examples=20)
@given(st.sampled_from(SHAPES), st.binary(min_size=1, max_size=5000), st.data())
def test_a_reconstructed_fragment_is_the_lost_one(
    shape: tuple[int, int], data: bytes, draw: st.DataObject
) -> None:
    k, m = shape
    native, driver = pair(k, m)
    fragments = native.encode(data)
    lost = draw.draw(st.integers(0, k + m - 1))
    others = [f for i, f in enumerate(fragments) if i != lost][:k]
    assert native.reconstruct(others, lost) == fragments[lost]
    assert driver.reconstruct(list(others), [lost]) == [fragments[lost]]
    assert [native.index(f) for f in fragments] == list(range(k + m))


def test_a_large_chunk_as_the_store_codes_it() -> None:
    native, driver = pair(6, 2)
    data = bytes(range(256)) * (4 * 4096) + b"tag of sixteen b"  # a sealed 4 MiB chunk
    fragments = native.encode(data)
    assert fragments == driver.encode(data)
    assert native.decode(fragments[2:]) == data


def test_a_corrupt_header_is_a_kvs_error_not_a_crash() -> None:
    native, _driver = pair(3, 2)
    fragments = native.encode(b"meter readings " * 40)
    bad = bytearray(fragments[0])
    bad[1] ^= 0x01  # the index: the header's checksum no longer matches
    with pytest.raises(KvsError):
        native.index(bytes(bad))
    with pytest.raises(KvsError):
        native.decode([bytes(bad), *fragments[1:3]])
    # a header whose sizes point past its fragment is refused before the library reads it
    forged = bytearray(fragments[1])
    struct.pack_into("=I", forged, 4, len(forged))
    with pytest.raises(KvsError, match="does not fit"):
        native.decode([fragments[0], bytes(forged), fragments[2]])
    with pytest.raises(KvsError, match="header"):
        native.index(b"short")
    with pytest.raises(KvsError, match="length"):
        native.decode([fragments[0], fragments[1][:-1], fragments[2]])
    with pytest.raises(KvsError, match="bytes"):
        native.decode([bytearray(f) for f in fragments[:3]])  # type: ignore[misc]
    assert len(fragments[0]) > HEADER_BYTES


def test_a_fragment_index_outside_the_code_is_refused_before_the_library() -> None:
    # liberasurecode indexes its fragment arrays with it unchecked: past them it copied out
    # whatever memory a stray pointer named, or crashed the process
    native, _driver = pair(4, 2)
    fragments = native.encode(b"meter readings " * 40)
    for index in (1000, 6, -1):
        with pytest.raises(KvsError, match=f"no fragment {index}"):
            native.reconstruct(fragments[:4], index)
    for binding in (Coder(4, 2), Coder(4, 2, native=False)):
        for index in (7, -1):
            with pytest.raises(KvsError, match=f"reconstruction failed: no fragment {index}"):
                binding.rebuild(dict(enumerate(fragments[:4])), [index])


FIELDS = {
    "idx": (0, "I"),
    "size": (4, "I"),
    "extra": (8, "I"),
    "orig": (12, "Q"),
    "chksum": (20, "B"),
}


@settings(max_examples=150)
@given(st.data())
def test_forged_headers_are_refused_or_decoded_never_read_past(draw: st.DataObject) -> None:
    # liberasurecode trusts a header's sizes, and skips its checksum for a header that claims
    # a version before 1.2: a forged one must fail as a KvsError, never read out of bounds
    native, _driver = pair(4, 2)
    fragments = native.encode(draw.draw(st.binary(min_size=1, max_size=3000)))
    kept = [
        bytearray(f) for f in draw.draw(st.permutations(fragments))[: draw.draw(st.integers(4, 6))]
    ]
    for forged in draw.draw(st.lists(st.sampled_from(kept), min_size=1, max_size=3)):
        struct.pack_into("=I", forged, 63, 0x010100)  # libec_version 1.1.0: no checksum
        offset, kind = FIELDS[draw.draw(st.sampled_from(sorted(FIELDS)))]
        top = {"I": 2**32 - 1, "Q": 2**64 - 1, "B": 255}[kind]
        near = [0, 1, 2, len(forged), len(forged) - HEADER_BYTES, top, top // 2 + 1]
        value = draw.draw(st.sampled_from(near) | st.integers(0, top))
        struct.pack_into("=" + kind, forged, offset, value % (top + 1))
    given_ = [bytes(f) for f in kept]
    for call in (
        lambda: native.decode(given_),
        lambda: native.reconstruct(given_, draw.draw(st.integers(0, 5))),
        lambda: native.index(given_[0]),
    ):
        with contextlib.suppress(KvsError):
            call()


def test_too_few_fragments_fail_in_the_library() -> None:
    native, _driver = pair(3, 2)
    fragments = native.encode(b"x" * 300)
    with pytest.raises(KvsError, match="decoding failed"):
        native.decode(fragments[:2])


def test_the_library_is_pyeclibs_own() -> None:
    path = library_path()
    assert path.parent.name == "pyeclib.libs"
    assert path.name.startswith("liberasurecode-")


def test_a_library_without_the_symbols_is_refused() -> None:
    libc = ctypes.util.find_library("c")
    assert libc is not None
    with pytest.raises(ConfigurationError, match="cannot be used"):
        load(Path(libc))
    with pytest.raises(ConfigurationError, match="cannot be used"):
        load(Path("/nonexistent/liberasurecode.so.1"))


def test_an_unknown_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="no backend"):
        NativeCodec(6, 2, "jerasure_rs_vand")
    monkeypatch.setattr(erasure_native, "BACKEND_IDS", {BACKEND: 2})  # not in the wheel
    with pytest.raises(ConfigurationError, match="no backend"):
        NativeCodec(6, 2, BACKEND)


class CountingCleanup:
    """The library, counting the decoded buffers it is asked to free."""

    def __init__(self) -> None:
        self.lib = load()
        self.freed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)

    def liberasurecode_decode_cleanup(self, desc: int, out: Any) -> int:
        result: int = self.lib.liberasurecode_decode_cleanup(desc, out)
        assert result == 0  # freed (an instance destroyed first would refuse to)
        self.freed += 1
        return result


def test_decode_then_hands_over_the_librarys_buffer_and_frees_it() -> None:
    lib = CountingCleanup()
    native = NativeCodec(4, 2, BACKEND, lib)
    data = bytes(range(256)) * 300
    fragments = native.encode(data)
    seen: list[str] = []

    def first_bytes(view: memoryview) -> bytes:
        seen.append(type(view).__name__)
        return bytes(view[:10])

    assert native.decode_then(fragments[1:5], first_bytes) == data[:10]
    assert seen == ["memoryview"]
    assert lib.freed == 1
    assert native.decode(fragments[:4]) == data
    assert lib.freed == 2


def test_a_view_kept_past_then_keeps_the_buffer_until_it_goes() -> None:
    # It was never freed (a view kept leaked its 4 MiB chunk for the process's life)
    lib = CountingCleanup()
    native = NativeCodec(4, 2, BACKEND, lib)
    data = bytes(range(256)) * 300
    kept = native.decode_then(native.encode(data)[:4], lambda view: view[100:200])
    assert lib.freed == 0
    assert bytes(kept) == data[100:200]  # still the library's buffer, not freed under it
    del kept
    assert lib.freed == 1
    with pytest.raises(ValueError, match="released"):  # the view given is released
        native.decode_then(native.encode(data)[:4], lambda view: view).tobytes()
    assert lib.freed == 2


def test_every_buffer_is_freed_however_its_views_were_kept() -> None:
    lib = CountingCleanup()
    native = NativeCodec(3, 2, BACKEND, lib)
    data = bytes(range(256)) * 40
    fragments = native.encode(data)
    kept: list[object] = [
        native.decode_then(fragments[:3], lambda view: {"slice": view[5:9]}),
        native.decode_then(fragments[1:4], lambda view: [memoryview(view)]),
        # a buffer exported from the view given: that view cannot be released under it
        native.decode_then(fragments[2:], lambda view: (ctypes.c_char * 10).from_buffer(view)),
    ]
    for _ in range(20):
        native.decode_then(fragments[:3], lambda view: view[:1])  # kept, dropped at once
    assert lib.freed == 20
    assert bytes(cast(ctypes.Array[ctypes.c_char], kept[2])) == data[:10]
    del kept[:]
    assert lib.freed == 23


def test_then_errors_pass_unchanged_and_the_buffer_is_freed() -> None:
    lib = CountingCleanup()
    native = NativeCodec(3, 2, BACKEND, lib)
    fragments = native.encode(b"y" * 500)

    def refuse(view: memoryview) -> None:
        raise KvsError("chunk fails authentication")

    with pytest.raises(KvsError, match=r"^chunk fails authentication$"):
        native.decode_then(fragments[:3], refuse)
    assert lib.freed == 1


class CountingInstances(CountingCleanup):
    """The library, recording the instances it creates and destroys (and buffers freed)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[int] = []
        self.destroyed: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)

    def liberasurecode_instance_create(self, backend: int, args: Any) -> int:
        desc: int = self.lib.liberasurecode_instance_create(backend, args)
        self.created.append(desc)
        return desc

    def liberasurecode_instance_destroy(self, desc: int) -> int:
        self.destroyed.append(desc)
        result: int = self.lib.liberasurecode_instance_destroy(desc)
        return result


def test_each_codec_dropped_destroys_its_librarys_instance() -> None:
    # Codecs made outside the cached `coder()` (a Coder of its own, a binding whose sample
    # differs from pyeclib's) left their instance in the library for the process's life.
    lib = CountingInstances()
    for i in range(50):
        native = NativeCodec(2 + i % 4, 1 + i % 2, BACKEND, lib)
        assert native.decode(native.encode(b"z" * (100 + i))) == b"z" * (100 + i)
    del native
    gc.collect()
    assert len(set(lib.created)) == 50
    assert sorted(lib.destroyed) == sorted(lib.created)


def test_a_coders_native_codec_is_destroyed_with_the_coder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lib = CountingInstances()
    monkeypatch.setattr(erasure_native, "load", lambda: lib)
    for _ in range(10):
        assert Coder(4, 2).decode(dict(enumerate(Coder(4, 2).encode(b"q" * 999)))) == b"q" * 999
    gc.collect()
    assert len(lib.created) == 20
    assert sorted(lib.destroyed) == sorted(lib.created)


def test_a_view_kept_past_then_keeps_its_codec_until_it_goes() -> None:
    # The buffer is freed through the codec's instance: the codec is destroyed after it
    lib = CountingInstances()
    native = NativeCodec(4, 2, BACKEND, lib)
    data = bytes(range(256)) * 300
    kept = native.decode_then(native.encode(data)[1:5], lambda view: view[100:200])
    del native
    gc.collect()
    assert lib.destroyed == []
    assert lib.freed == 0
    assert bytes(kept) == data[100:200]
    del kept
    gc.collect()
    assert lib.freed == 1  # freed while its instance was there (the cleanup returned 0)
    assert lib.destroyed == lib.created
