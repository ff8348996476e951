"""A deployment's secrets as the CAS holds them, and back to the stages' keys."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.deployment import Deployment, TrustedMaterial
from meterseal.trust.material import (
    ANONYMIZATION_KEY,
    BILLING_KEY,
    HEADEND_KEYS,
    MaterialError,
    anonymization_key_from,
    billing_key_from,
    deployment_secrets,
    headend_keys_from,
    trusted_material,
)

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def deployment(headend: HeadEndKeys) -> Deployment:
    ca_key, ca_cert = certs.create_ca("material CA", now=NOW, rng=os.urandom)
    return Deployment(
        Path("unused"),
        ca_key,
        ca_cert,
        headend,
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
        os.urandom(32),
    )


def _der(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_the_secrets_rebuild_the_same_keys(deployment: Deployment) -> None:
    secrets = deployment_secrets(deployment)
    assert set(secrets) == {HEADEND_KEYS, ANONYMIZATION_KEY, BILLING_KEY}
    rebuilt = headend_keys_from(secrets)
    assert rebuilt.public().keys.keys() == deployment.headend.public().keys.keys()
    for suite, (kid, _) in deployment.headend.public().keys.items():
        assert rebuilt.public().keys[suite][0] == kid
    assert rebuilt.rsa_key.private_numbers() == deployment.headend.rsa_key.private_numbers()
    material = trusted_material(secrets, deployment.ca_cert)
    assert isinstance(material, TrustedMaterial)
    assert material.ca_certificate == deployment.ca_cert
    assert material.anonymization_key == deployment.anonymization_key
    assert material.headend.public().keys["p256"][0] == rebuilt.public().keys["p256"][0]
    billing = billing_key_from(secrets)
    assert billing.private_numbers() == deployment.billing_key.private_numbers()
    assert anonymization_key_from(secrets) == deployment.anonymization_key
    assert deployment_secrets(deployment) == secrets  # canonical: stable for re-imports


def test_malformed_secrets_are_refused(deployment: Deployment) -> None:
    good = deployment_secrets(deployment)
    keys = dict(cbor2.loads(good[HEADEND_KEYS])["keys"])
    swapped = keys | {"p256": keys["x25519"]}
    cases = [
        ({}, "was not released"),
        ({HEADEND_KEYS: b"\xff"}, "not CBOR"),
        ({HEADEND_KEYS: cbor2.dumps({"format": 2})}, "not format 1"),
        ({HEADEND_KEYS: cbor2.dumps({"format": 1, "keys": swapped})}, "wrong type"),
        ({HEADEND_KEYS: cbor2.dumps({"format": 1, "keys": keys | {"rsa4096": b"x"}})}, "not a"),
    ]
    for secrets, match in cases:
        with pytest.raises(MaterialError, match=match):
            headend_keys_from(secrets)
    with pytest.raises(MaterialError, match="shorter than 32"):
        anonymization_key_from({ANONYMIZATION_KEY: b"short"})
    with pytest.raises(MaterialError, match="not a P-256 key"):
        billing_key_from({BILLING_KEY: _der(ed25519.Ed25519PrivateKey.generate())})
