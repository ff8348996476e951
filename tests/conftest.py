"""Shared fixtures: a fixed clock, one CA, one head-end and a meter per suite, unique names."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import settings

from meterseal.crypto import at_rest, certs
from meterseal.crypto.keys import HeadEndKeys, MeterKey, generate_meter_key
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import SUITES, CipherSuite

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
# This run's tag on the shared services (NATS, PostgreSQL, Mosquitto): the process id keeps
# runs side by side apart, the random part runs that reuse a process id.
RUN_TAG = f"t{os.getpid():x}{secrets.token_hex(3)}"
_test_numbers = itertools.count()

# No per-example deadline: properties assert behaviour, and on a shared 2-core CI machine a
# slow example (a 700-leaf tree's every prefix under load) is not a failure. Speed lives in
# `meterseal bench`.
settings.register_profile("meterseal", deadline=None)
settings.load_profile("meterseal")


@pytest.fixture(autouse=True, scope="session")
def _unencrypted_keys_warned() -> None:
    # Most tests keep their keys unencrypted on purpose: the once-per-process warning would
    # land in whichever command's output came first. tests/crypto/test_at_rest.py renews it.
    at_rest._warned = True


@pytest.fixture(autouse=True, scope="session")
def _no_configuration_file() -> Iterator[None]:
    # A meterseal.toml in the checkout must not steer the suite; tests that want one set
    # MS_CONFIG (or --config) themselves. Processes the tests start inherit it.
    old = os.environ.get("MS_CONFIG")
    os.environ["MS_CONFIG"] = "none"
    yield
    if old is None:
        del os.environ["MS_CONFIG"]
    else:
        os.environ["MS_CONFIG"] = old


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 0, so only the code's own modes keep files private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    """A reproducible byte source for `seal(..., rng=...)`."""
    generator = random.Random(seed)
    return lambda n: generator.randbytes(n)


@dataclass
class World:
    """A deployment in memory: CA, head-end keys, registry and one meter per suite."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    headend: HeadEndKeys
    registry: MeterRegistry
    meters: dict[str, MeterKey]

    def add_meter(self, meter_id: str, suite: CipherSuite, region: str = "R01") -> MeterKey:
        """Provision and register one more meter."""
        key = generate_meter_key(meter_id, suite)
        cert = certs.issue_meter_certificate(
            self.ca_key, self.ca_cert, meter_id, key.public_key(), now=NOW, rng=os.urandom
        )
        self.registry.register(cert, suite, f"CUST-{meter_id}", region)
        return key


@pytest.fixture(scope="session")
def headend() -> HeadEndKeys:
    """One head-end for the whole run (RSA-4096 generation is slow)."""
    return HeadEndKeys.generate()


@pytest.fixture(scope="session")
def world(headend: HeadEndKeys) -> World:
    """A CA, a registry and a meter per suite (session-wide; tests must not revoke these)."""
    ca_key, ca_cert = certs.create_ca("test CA", now=NOW, rng=os.urandom)
    w = World(ca_key, ca_cert, headend, MeterRegistry(ca_cert), {})
    for suite in SUITES.values():
        w.meters[suite.name] = w.add_meter(f"M-{suite.name}", suite)
    return w


@pytest.fixture(params=list(SUITES))
def suite(request: pytest.FixtureRequest) -> CipherSuite:
    """Each suite in turn."""
    return SUITES[request.param]


@pytest.fixture
def unique_name() -> str:
    """A name of this test's own on the shared services: lowercase letters and digits."""
    # Stream prefixes, schemas, topics and subjects all derive from it: a run never meets
    # another run's names, nor those of a head-end running on the same services.
    return f"{RUN_TAG}n{next(_test_numbers)}"
