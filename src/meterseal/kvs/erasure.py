"""Erasure coding of sealed chunks: k data + m parity fragments, any k rebuild (liberasurecode).

liberasurecode with the ISA-L Reed-Solomon backend (`isa_l_rs_vand`, BSD, SIMD), as pyeclib's
wheel bundles it; when that backend is missing, liberasurecode's own `liberasurecode_rs_vand`
(same code, slower, named in `Coder.backend`). The library is called through ctypes
(kvs/erasure_native.py), which lets go of the GIL while it codes, so chunks are coded beside
their encryption on other cores; pyeclib's own binding, which holds the GIL, is the fallback
(`Coder.binding` says which is in use). Both give the same fragments byte for byte (checked on
a sample before the ctypes binding is used), so either decodes what the other stored. Each
fragment carries liberasurecode's 80-byte header (its index and the original length). In memory
only: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from meterseal.errors import ConfigurationError, KvsError
from meterseal.kvs.erasure_native import NativeCodec, check_fragments

T = TypeVar("T")

BACKENDS = ("isa_l_rs_vand", "liberasurecode_rs_vand")
NATIVE = "liberasurecode via ctypes"
PYECLIB = "pyeclib"
# encoded both ways before the ctypes binding is trusted: several stripes, an odd tail
SAMPLE = bytes(range(256)) * 37 + b"meterseal"


def _driver(k: int, m: int) -> tuple[Any, str]:
    try:
        from pyeclib.ec_iface import ECDriver
    except ImportError as error:
        raise ConfigurationError(
            "erasure coding needs pyeclib: pip install 'meterseal[kvs]'"
        ) from error
    failures = []
    for backend in BACKENDS:
        try:
            return ECDriver(k=k, m=m, ec_type=backend), backend
        except Exception as error:  # pyeclib raises its own ECDriverError family
            failures.append(f"{backend}: {error}")
    raise ConfigurationError("no erasure coding backend: " + "; ".join(failures))


def _native(k: int, m: int, backend: str, driver: Any) -> tuple[NativeCodec | None, str]:
    """The ctypes binding when it codes exactly as pyeclib does, else None and why not."""
    try:
        native = NativeCodec(k, m, backend)
        same = native.encode(SAMPLE) == driver.encode(SAMPLE)
    except (ConfigurationError, KvsError) as error:
        return None, str(error)
    if not same:
        return None, "its fragments differ from pyeclib's"
    return native, ""


class Coder:
    """Encode into k + m fragments and decode from any k of them."""

    def __init__(self, k: int, m: int, *, native: bool = True) -> None:
        self.k = k
        self.m = m
        self._driver, self.backend = _driver(k, m)
        self._native: NativeCodec | None = None
        self.binding = PYECLIB
        if native:
            self._native, why = _native(k, m, self.backend, self._driver)
            self.binding = NATIVE if self._native is not None else f"{PYECLIB} ({NATIVE}: {why})"

    def encode(self, data: bytes | memoryview) -> list[bytes]:
        """The k + m fragments of `data` (not kept: a buffer may be reused), fragment i at
        index i."""
        if self._native is not None:
            return self._native.encode(data)
        fragments: list[bytes] = self._driver.encode(bytes(data))
        return fragments

    def decode(self, fragments: dict[int, bytes]) -> bytes:
        """The data from at least k fragments by index (more are fine)."""
        return self.decode_then(fragments, bytes)

    def decode_then(
        self, fragments: dict[int, bytes], then: Callable[[bytes | memoryview], T]
    ) -> T:
        """`then` of the data from at least k fragments by index: with the ctypes binding a
        view of the library's buffer (not copied; a view `then` keeps holds it until dropped)."""
        if len(fragments) < self.k:
            raise KvsError(f"{len(fragments)} fragments cannot rebuild a {self.k}+{self.m} chunk")
        payloads = [fragments[i] for i in sorted(fragments)]
        if self._native is not None:  # its KvsErrors say "erasure decoding failed"; then's pass
            return self._native.decode_then(payloads, then)
        try:
            check_fragments(payloads, self.k, self.m)  # pyeclib passes headers on unchecked
            data: bytes = self._driver.decode(payloads)
        except Exception as error:
            raise KvsError(f"erasure decoding failed: {error}") from error
        return then(data)

    def rebuild(self, fragments: dict[int, bytes], missing: list[int]) -> dict[int, bytes]:
        """The fragments at indices `missing`, rebuilt from at least k others."""
        if len(fragments) < self.k:
            raise KvsError(f"{len(fragments)} fragments cannot rebuild a {self.k}+{self.m} chunk")
        for index in missing:  # either binding: liberasurecode indexes its arrays with it
            if not 0 <= index < self.k + self.m:
                raise KvsError(f"erasure reconstruction failed: no fragment {index} in a chunk")
        payloads = [fragments[i] for i in sorted(fragments)]
        wanted = sorted(missing)  # data before parity: a rebuilt one helps rebuild the next
        try:
            if self._native is not None:
                rebuilt = []
                for index in wanted:
                    rebuilt.append(self._native.reconstruct(payloads, index))
                    payloads.append(rebuilt[-1])
            else:
                check_fragments(payloads, self.k, self.m)  # pyeclib passes headers unchecked
                rebuilt = self._driver.reconstruct(payloads, list(wanted))
        except Exception as error:
            raise KvsError(f"erasure reconstruction failed: {error}") from error
        return dict(zip(wanted, rebuilt, strict=True))

    def fragment_index(self, fragment: bytes) -> int:
        """The index a fragment's header names."""
        try:
            if self._native is not None:
                return self._native.index(fragment)
            check_fragments([fragment], self.k, self.m)
            index: int = self._driver.get_metadata(fragment, formatted=1)["index"]
        except Exception as error:
            raise KvsError(f"not a fragment: {error}") from error
        return index


@cache
def coder(k: int, m: int) -> Coder:
    """The (shared) coder for k + m."""
    return Coder(k, m)
