"""A deployment's secrets as the CAS holds them, and the way back to the stages' key objects.

`deployment_secrets(deployment)` gives the named byte strings the CAS stores:

* "headend-keys": every suite's head-end private key, canonical CBOR {"format": 1,
  "keys": {name: PKCS#8 DER}} with names rsa4096, p256, x25519, mlkem768, mlkem768-x25519;
* "anonymization-key": the 32-byte HMAC key of the pseudonyms;
* "billing-key": the billing service's P-256 key, PKCS#8 DER;
* "command-key": the operator command key that signs meter commands (P-256, PKCS#8 DER),
  when the deployment has one (`meterseal command keygen`).

Group keys for dissemination (issue 6) will join as "group-key/LEVEL". The inverse helpers
rebuild `HeadEndKeys`, `TrustedMaterial` (the CA certificate is public and is passed in) and
the billing key from released secrets, refusing anything malformed with MaterialError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, rsa, x25519

from meterseal.crypto import cose
from meterseal.crypto.keys import HeadEndKeys, HybridKemKey
from meterseal.deployment import Deployment, TrustedMaterial
from meterseal.trust.errors import TrustError

HEADEND_KEYS = "headend-keys"
ANONYMIZATION_KEY = "anonymization-key"
BILLING_KEY = "billing-key"
COMMAND_KEY = "command-key"
SECRET_NAMES = (HEADEND_KEYS, ANONYMIZATION_KEY, BILLING_KEY)
_KEY_FORMAT = 1


class MaterialError(TrustError):
    """A released secret is missing or does not hold the key it should."""


def _der(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def deployment_secrets(deployment: Deployment) -> dict[str, bytes]:
    """The deployment's secrets by CAS name (see the module docstring for their encodings)."""
    headend = deployment.headend
    keys = {
        "rsa4096": _der(headend.rsa_key),
        "p256": _der(headend.p256_key),
        "x25519": _der(headend.x25519_key),
        "mlkem768": _der(headend.hybrid_key.mlkem_key),
        "mlkem768-x25519": _der(headend.hybrid_key.x25519_key),
    }
    return {
        HEADEND_KEYS: cbor2.dumps({"format": _KEY_FORMAT, "keys": keys}, canonical=True),
        ANONYMIZATION_KEY: deployment.anonymization_key,
        BILLING_KEY: _der(deployment.billing_key),
    }


def _secret(secrets: Mapping[str, bytes], name: str) -> bytes:
    value = secrets.get(name)
    if not isinstance(value, bytes) or not value:
        raise MaterialError(f"secret {name!r} was not released")
    return value


def _load(der: Any, name: str) -> Any:
    if not isinstance(der, bytes):
        raise MaterialError(f"{name}: not a DER key")
    try:
        return serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as exc:
        raise MaterialError(f"{name}: not a private key ({exc})") from None


def headend_keys_from(secrets: Mapping[str, bytes]) -> HeadEndKeys:
    """The head-end's keys from the released "headend-keys" secret."""
    try:
        item = cose.loads_strict(_secret(secrets, HEADEND_KEYS))
    except cose.CoseFormatError:
        raise MaterialError(f"{HEADEND_KEYS}: not CBOR") from None
    if not isinstance(item, cose.MAP_TYPES) or item.get("format") != _KEY_FORMAT:
        raise MaterialError(f"{HEADEND_KEYS}: not format {_KEY_FORMAT}")
    der = item.get("keys")
    if not isinstance(der, cose.MAP_TYPES):
        raise MaterialError(f"{HEADEND_KEYS}: no keys")
    names = ("rsa4096", "p256", "x25519", "mlkem768", "mlkem768-x25519")
    rsa_key, p256, x_key, kem, hx = (_load(der.get(n), f"{HEADEND_KEYS}/{n}") for n in names)
    if not (
        isinstance(rsa_key, rsa.RSAPrivateKey)
        and isinstance(p256, ec.EllipticCurvePrivateKey)
        and isinstance(x_key, x25519.X25519PrivateKey)
        and isinstance(kem, mlkem.MLKEM768PrivateKey)
        and isinstance(hx, x25519.X25519PrivateKey)
    ):
        raise MaterialError(f"{HEADEND_KEYS}: a key has the wrong type")
    return HeadEndKeys(rsa_key, p256, x_key, HybridKemKey(kem, hx))


def anonymization_key_from(secrets: Mapping[str, bytes]) -> bytes:
    """The anonymization key (at least 32 bytes)."""
    key = _secret(secrets, ANONYMIZATION_KEY)
    if len(key) < 32:
        raise MaterialError(f"{ANONYMIZATION_KEY}: shorter than 32 bytes")
    return key


def billing_key_from(secrets: Mapping[str, bytes]) -> ec.EllipticCurvePrivateKey:
    """The billing service's P-256 signing key."""
    key = _load(_secret(secrets, BILLING_KEY), BILLING_KEY)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MaterialError(f"{BILLING_KEY}: not a P-256 key")
    return key


def command_key_from(secrets: Mapping[str, bytes]) -> ec.EllipticCurvePrivateKey:
    """The operator command key (P-256) that signs meter commands."""
    key = _load(_secret(secrets, COMMAND_KEY), COMMAND_KEY)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MaterialError(f"{COMMAND_KEY}: not a P-256 key")
    return key


def trusted_material(
    secrets: Mapping[str, bytes], ca_certificate: x509.Certificate
) -> TrustedMaterial:
    """The trusted stages' `TrustedMaterial` from "headend-keys" and "anonymization-key"."""
    return TrustedMaterial(
        headend_keys_from(secrets), ca_certificate, anonymization_key_from(secrets)
    )
