"""Erasure coding of sealed chunks: k data + m parity fragments, any k rebuild (pyeclib).

pyeclib over liberasurecode with the ISA-L Reed-Solomon backend (`isa_l_rs_vand`, BSD, SIMD);
when that backend is missing, liberasurecode's own `liberasurecode_rs_vand` (same code, slower,
named in `Coder.backend`). Each fragment carries liberasurecode's 80-byte header (its index and
the original length). In memory only: no I/O.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from meterseal.errors import ConfigurationError, KvsError

BACKENDS = ("isa_l_rs_vand", "liberasurecode_rs_vand")


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


class Coder:
    """Encode into k + m fragments and decode from any k of them."""

    def __init__(self, k: int, m: int) -> None:
        self.k = k
        self.m = m
        self._driver, self.backend = _driver(k, m)

    def encode(self, data: bytes) -> list[bytes]:
        """The k + m fragments of `data`, fragment i at index i."""
        fragments: list[bytes] = self._driver.encode(data)
        return fragments

    def decode(self, fragments: dict[int, bytes]) -> bytes:
        """The data from at least k fragments by index (more are fine)."""
        if len(fragments) < self.k:
            raise KvsError(f"{len(fragments)} fragments cannot rebuild a {self.k}+{self.m} chunk")
        try:
            data: bytes = self._driver.decode([fragments[i] for i in sorted(fragments)])
        except Exception as error:
            raise KvsError(f"erasure decoding failed: {error}") from error
        return data

    def rebuild(self, fragments: dict[int, bytes], missing: list[int]) -> dict[int, bytes]:
        """The fragments at indices `missing`, rebuilt from at least k others."""
        if len(fragments) < self.k:
            raise KvsError(f"{len(fragments)} fragments cannot rebuild a {self.k}+{self.m} chunk")
        try:
            rebuilt = self._driver.reconstruct(
                [fragments[i] for i in sorted(fragments)], list(missing)
            )
        except Exception as error:
            raise KvsError(f"erasure reconstruction failed: {error}") from error
        return dict(zip(missing, rebuilt, strict=True))

    def fragment_index(self, fragment: bytes) -> int:
        """The index a fragment's header names."""
        try:
            index: int = self._driver.get_metadata(fragment, formatted=1)["index"]
        except Exception as error:
            raise KvsError(f"not a fragment: {error}") from error
        return index


@cache
def coder(k: int, m: int) -> Coder:
    """The (shared) coder for k + m."""
    return Coder(k, m)
