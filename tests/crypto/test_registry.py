"""Certificates and the registry: only the deployment CA's meter certificates get in."""

from __future__ import annotations

import os

import pytest

from meterseal.crypto import certs
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import ED25519, P256, PAPER, PQ
from meterseal.errors import CertificateError
from tests.conftest import NOW, World


@pytest.mark.parametrize("suite", [PAPER, P256, ED25519, PQ], ids=lambda s: s.name)
def test_meter_certificate_carries_the_meter_id(world: World, suite: object) -> None:
    key = generate_meter_key("MTR-42", suite)  # type: ignore[arg-type]
    cert = certs.issue_meter_certificate(
        world.ca_key, world.ca_cert, "MTR-42", key.public_key(), now=NOW, rng=os.urandom
    )
    assert certs.verify_meter_certificate(cert, world.ca_cert) == "MTR-42"
    registry = MeterRegistry(world.ca_cert)
    record = registry.register(cert, suite, "C", "R07")  # type: ignore[arg-type]
    assert (record.meter_id, record.region_id, record.revoked) == ("MTR-42", "R07", False)


def test_certificate_from_a_foreign_ca_is_refused(world: World) -> None:
    rogue_key, rogue_cert = certs.create_ca("rogue CA", now=NOW, rng=os.urandom)
    key = generate_meter_key("MTR-1", P256)
    cert = certs.issue_meter_certificate(
        rogue_key, rogue_cert, "MTR-1", key.public_key(), now=NOW, rng=os.urandom
    )
    with pytest.raises(CertificateError, match="not issued by"):
        MeterRegistry(world.ca_cert).register(cert, P256, "C", "R1")


def test_ca_certificate_is_not_a_meter(world: World) -> None:
    with pytest.raises(CertificateError):
        MeterRegistry(world.ca_cert).register(world.ca_cert, P256, "C", "R1")


def test_key_type_must_fit_the_suite(world: World) -> None:
    key = generate_meter_key("MTR-1", ED25519)
    cert = certs.issue_meter_certificate(
        world.ca_key, world.ca_cert, "MTR-1", key.public_key(), now=NOW, rng=os.urandom
    )
    with pytest.raises(CertificateError, match="does not fit suite p256"):
        MeterRegistry(world.ca_cert).register(cert, P256, "C", "R1")


def test_revocation_is_recorded(world: World) -> None:
    registry = MeterRegistry(world.ca_cert)
    key = generate_meter_key("MTR-9", P256)
    cert = certs.issue_meter_certificate(
        world.ca_key, world.ca_cert, "MTR-9", key.public_key(), now=NOW, rng=os.urandom
    )
    registry.register(cert, P256, "C", "R1")
    registry.revoke("MTR-9", now=NOW)
    record = registry.get("MTR-9")
    assert record is not None
    assert record.revoked_at == NOW
