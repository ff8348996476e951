"""Where a stage's secrets come from: the deployment directory, or the CAS after attestation.

Each stage gets only what it needs (least privilege, and what the CAS policy grants):

| stage           | secrets                                   |
| --------------- | ----------------------------------------- |
| receiver        | none (it only moves bytes)                |
| open-verify     | head-end keys, stage link key             |
| anonymize-store | anonymization key, stage link key         |
| billing         | billing key                               |

From a deployment directory (services mode) a stage reads only its own files
(`STAGE_FILES`), so each can be given a directory holding just those (`meterseal keys stage`
copies them): never the CA's key, nor another stage's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto.at_rest import ensure_secret_file, read_secret_file
from meterseal.crypto.keys import HeadEndKeys, read_private_key
from meterseal.deployment import ANONYMIZATION_KEY, CA_CERT
from meterseal.deployment import STAGE_KEY_FILE as STAGE_KEY_FILE  # where it always was
from meterseal.errors import ConfigurationError, KeyFileError
from meterseal.runtime.tls import TlsIdentity
from meterseal.services.messages import STAGE_KEY_BYTES

_T = TypeVar("_T")
STAGE_KEY = "stage-key"  # its name in the CAS
BILLING_KEY_FILE = "billing.key.pem"
STAGE_SECRETS: dict[str, tuple[str, ...]] = {
    "receiver": (),
    "open-verify": ("headend-keys", "stage-key"),
    "anonymize-store": ("anonymization-key", "stage-key"),
    "billing": ("billing-key",),
}
_FILES_OF_SECRET = {
    "headend-keys": HeadEndKeys.file_names(),
    "anonymization-key": (ANONYMIZATION_KEY,),
    "stage-key": (STAGE_KEY_FILE,),
    "billing-key": (BILLING_KEY_FILE,),
}
# The files of the deployment directory each stage reads in services mode: its secrets, and
# open-verify the CA certificate (public: meters' certificates are checked against it).
STAGE_FILES: dict[str, tuple[str, ...]] = {
    stage: tuple(f for name in names for f in _FILES_OF_SECRET[name])
    + ((CA_CERT,) if stage == "open-verify" else ())
    for stage, names in STAGE_SECRETS.items()
}


@dataclass(frozen=True)
class StageSecrets:
    """The secrets one stage holds; a field it was not granted stays None."""

    headend: HeadEndKeys | None = None
    anonymization_key: bytes | None = None
    stage_key: bytes | None = None
    billing_key: ec.EllipticCurvePrivateKey | None = None
    tls: TlsIdentity | None = None  # trusted mode: the worker's TLS key, released by the CAS
    provenance: str = "deployment directory"  # shown in the service's status

    def need_headend(self) -> HeadEndKeys:
        """The head-end keys, or ConfigurationError."""
        return _need(self.headend, "head-end keys")

    def need_anonymization_key(self) -> bytes:
        """The anonymization key, or ConfigurationError."""
        return _need(self.anonymization_key, "anonymization key")

    def need_stage_key(self) -> bytes:
        """The stage link key, or ConfigurationError."""
        return _need(self.stage_key, "stage link key")

    def need_billing_key(self) -> ec.EllipticCurvePrivateKey:
        """The billing key, or ConfigurationError."""
        return _need(self.billing_key, "billing key")

    def __repr__(self) -> str:
        held = [
            name
            for name, value in (
                ("headend", self.headend),
                ("anonymization", self.anonymization_key),
                ("stage-link", self.stage_key),
                ("billing", self.billing_key),
                ("tls", self.tls),
            )
            if value is not None
        ]
        return f"StageSecrets(holds={held}, from={self.provenance!r})"


def _need(value: _T | None, what: str) -> _T:
    if value is None:
        raise ConfigurationError(f"this stage was not given the {what}")
    return value


class KeySource(Protocol):
    """Gives a stage its secrets."""

    def secrets(self, stage: str) -> StageSecrets:
        """The secrets of `stage` (one of STAGE_SECRETS)."""
        ...


def ensure_stage_key(directory: Path, passphrase: bytes | None = None) -> bytes:
    """The deployment's stage link key, created (0600) on first use."""
    return checked_stage_key(
        ensure_secret_file(
            directory / STAGE_KEY_FILE, lambda: os.urandom(STAGE_KEY_BYTES), passphrase
        ),
        str(directory / STAGE_KEY_FILE),
    )


def checked_stage_key(value: bytes, source: str) -> bytes:
    """`value` if it is a stage link key (32 bytes); ConfigurationError naming `source`."""
    # A key of another length would fail only at the first bus message (AES-GCM), after the
    # stage said it was ready; refused here, the stage does not start and says why.
    if len(value) != STAGE_KEY_BYTES:
        raise ConfigurationError(
            f"{STAGE_KEY} from {source} is {len(value)} bytes, not {STAGE_KEY_BYTES}: not a "
            f"stage link key (an imported {STAGE_KEY_FILE} must be its content, not the "
            "file as stored: `meterseal cas secrets import` unwraps it)"
        )
    return value


def missing_stage_files(directory: Path, stage: str) -> list[str]:
    """The files of `STAGE_FILES[stage]` that `directory` lacks."""
    return [name for name in STAGE_FILES[stage] if not (directory / name).is_file()]


@dataclass(frozen=True)
class DeploymentKeys:
    """Secrets read from the deployment directory (monolith and services modes)."""

    directory: Path
    passphrase: bytes | None = None

    def secrets(self, stage: str) -> StageSecrets:
        """Only the secrets `stage` is entitled to, read from their files and no other."""
        names = STAGE_SECRETS.get(stage)
        if names is None:
            raise ConfigurationError(f"unknown stage {stage!r}; known: {sorted(STAGE_SECRETS)}")
        missing = missing_stage_files(self.directory, stage)
        if missing:
            raise ConfigurationError(
                f"the {stage} stage cannot start: {', '.join(missing)} missing from "
                f"{self.directory} (it reads {', '.join(STAGE_FILES[stage])}; `meterseal keys "
                f"stage {stage} -d DEPLOYMENT --out DIR` copies them out of the deployment)"
            )
        directory, passphrase = self.directory, self.passphrase
        return StageSecrets(
            headend=(HeadEndKeys.load(directory, passphrase) if "headend-keys" in names else None),
            anonymization_key=(
                read_secret_file(directory / ANONYMIZATION_KEY, passphrase)
                if "anonymization-key" in names
                else None
            ),
            stage_key=(
                checked_stage_key(
                    read_secret_file(directory / STAGE_KEY_FILE, passphrase),
                    str(directory / STAGE_KEY_FILE),
                )
                if "stage-key" in names
                else None
            ),
            billing_key=(
                _ec_key(directory / BILLING_KEY_FILE, passphrase)
                if "billing-key" in names
                else None
            ),
        )


def _ec_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    key = read_private_key(path, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} is not an EC key")
    return key
