"""Erasure coding: any k of k + m fragments rebuild the data; sizes as policy.raw_bytes says."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyeclib.ec_iface import ECDriver

from meterseal.errors import KvsError
from meterseal.kvs import erasure_native
from meterseal.kvs.erasure import NATIVE, PYECLIB, Coder, coder
from meterseal.kvs.policy import fragment_size

SHAPES = [(1, 1), (2, 1), (3, 2), (4, 2), (6, 2)]


@settings(max_examples=30)
@given(st.sampled_from(SHAPES), st.binary(min_size=1, max_size=5000))
def test_every_k_subset_decodes_and_rebuilds(shape: tuple[int, int], data: bytes) -> None:
    k, m = shape
    code = coder(k, m)
    fragments = code.encode(data)
    assert len(fragments) == k + m
    if code.backend == "isa_l_rs_vand":
        assert {len(f) for f in fragments} == {fragment_size(len(data), k)}
    for kept in itertools.combinations(range(k + m), k):
        assert code.decode({i: fragments[i] for i in kept}) == data
    missing = [i for i in range(k + m) if i not in kept]
    rebuilt = code.rebuild({i: fragments[i] for i in kept}, missing)
    assert rebuilt == {i: fragments[i] for i in missing}
    assert [code.fragment_index(f) for f in fragments] == list(range(k + m))


def test_too_few_fragments_or_garbage_is_a_kvs_error() -> None:
    code = coder(3, 2)
    fragments = code.encode(b"x" * 300)
    with pytest.raises(KvsError, match="cannot rebuild"):
        code.decode({0: fragments[0], 4: fragments[4]})
    with pytest.raises(KvsError, match="cannot rebuild"):
        code.rebuild({0: fragments[0]}, [1])
    with pytest.raises(KvsError):
        code.fragment_index(b"not a fragment" * 10)


def test_the_fast_backend_is_the_one_in_use() -> None:
    assert coder(6, 2).backend == "isa_l_rs_vand"
    assert coder(6, 2).binding == NATIVE  # liberasurecode without the GIL


def test_fragments_of_either_binding_decode_with_the_other() -> None:
    native, fallback = Coder(4, 2), Coder(4, 2, native=False)
    assert (native.binding, fallback.binding) == (NATIVE, PYECLIB)
    data = bytes(range(256)) * 50
    ours, theirs = native.encode(data), fallback.encode(data)
    assert ours == theirs
    assert native.decode({i: theirs[i] for i in (1, 3, 4, 5)}) == data
    assert fallback.decode({i: ours[i] for i in (0, 2, 4, 5)}) == data
    kept = {i: ours[i] for i in (2, 3, 4, 5)}
    rebuilt = {0: ours[0], 1: ours[1]}
    assert native.rebuild(kept, [1, 0]) == fallback.rebuild(kept, [1, 0]) == rebuilt


def test_without_its_library_the_coder_falls_back_to_pyeclib(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(erasure_native, "_loaded", None)
    monkeypatch.setattr(erasure_native, "library_path", lambda: tmp_path / "missing.so.1")
    code = Coder(3, 2)
    assert code.binding.startswith(PYECLIB + " (")
    assert "cannot be used" in code.binding
    check_round_trip(code)


def test_a_binding_that_codes_differently_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def skewed(self: erasure_native.NativeCodec, data: bytes) -> list[bytes]:
        return [f[:-1] + b"?" for f in real(self, data)]

    real = erasure_native.NativeCodec.encode
    monkeypatch.setattr(erasure_native.NativeCodec, "encode", skewed)
    code = Coder(3, 2)
    assert code.binding == f"{PYECLIB} ({NATIVE}: its fragments differ from pyeclib's)"
    check_round_trip(code)


@pytest.mark.parametrize("native", [True, False])
def test_a_corrupt_fragment_header_is_a_kvs_error(native: bool) -> None:
    code = Coder(3, 2, native=native)
    fragments = code.encode(b"z" * 900)
    bad = bytearray(fragments[0])
    bad[0] ^= 0x01
    with pytest.raises(KvsError, match="not a fragment"):
        code.fragment_index(bytes(bad))
    with pytest.raises(KvsError, match="erasure decoding failed"):
        code.decode({0: bytes(bad), 1: fragments[1], 2: fragments[2]})


def check_round_trip(code: Coder) -> None:
    data = b"customer month " * 100
    fragments = code.encode(data)
    assert fragments == ECDriver(k=code.k, m=code.m, ec_type=code.backend).encode(data)
    assert code.decode({i: fragments[i] for i in (0, 3, 4)}) == data
    assert code.rebuild({i: fragments[i] for i in (1, 2, 4)}, [3, 0]) == {
        0: fragments[0],
        3: fragments[3],
    }


def test_pyeclibs_binding_refuses_a_forged_header_before_the_library_reads_past_it() -> None:
    # liberasurecode skips the metadata checksum of a header claiming version 1.1 and trusts
    # its sizes: with pyeclib's binding (the fallback) these fragments crashed the process
    code = Coder(4, 2, native=False)
    fragments = code.encode(bytes(range(256)) * 40)
    forged: list[bytes] = []
    for fragment in fragments[:4]:
        header = bytearray(fragment)
        struct.pack_into("=I", header, 63, 0x010100)  # libec_version 1.1.0: no checksum
        struct.pack_into("=IIIQ", header, 0, len(forged), 1 << 20, 0, 4 << 20)  # 1 MiB each
        forged.append(bytes(header))
    with pytest.raises(KvsError, match="decoding failed: a fragment's header does not fit"):
        code.decode(dict(enumerate(forged)))
    with pytest.raises(KvsError, match="reconstruction failed: a fragment's header"):
        code.rebuild(dict(enumerate(forged)), [5])
    with pytest.raises(KvsError, match="not a fragment: a fragment's header"):
        code.fragment_index(forged[0])
