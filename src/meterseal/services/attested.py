"""Trusted mode: a stage's secrets come from the CAS, released to its attested measurement.

At start the stage's process measures its code (`trust.measurement.stage_measurement`),
quotes the measurement with the platform's attester (the simulated backend unless the
hardware exists: see docs/trust.md) and fetches exactly the secrets of its stage
(`keys.STAGE_SECRETS`). A worker whose code changed gets no secret and fails to start with
the CAS's reason; nothing is read from the deployment directory's private key files.
With `tls`, the stage also fetches its TLS identity (`tls/STAGE`) and its admin endpoint
serves HTTPS with it: TLS ends inside the attested worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meterseal.services.keys import STAGE_KEY, STAGE_SECRETS, StageSecrets, checked_stage_key
from meterseal.trust.material import (
    ANONYMIZATION_KEY,
    BILLING_KEY,
    HEADEND_KEYS,
    anonymization_key_from,
    billing_key_from,
    headend_keys_from,
)
from meterseal.trust.worker import start_trusted, tls_secret


@dataclass(frozen=True)
class CasKeys:
    """Fetches a stage's secrets from the CAS at `cas_url` after attesting (trusted mode)."""

    cas_url: str
    deployment: Path  # where the (simulated) platform attestation key lives
    passphrase: bytes | None = field(default=None, repr=False)  # of the platform's key file
    tls: bool = False  # also fetch the stage's TLS identity (trusted stages only)

    def secrets(self, stage: str) -> StageSecrets:
        """Measure, attest, fetch; ReleaseRefused (with the reason) if the CAS says no."""
        names = STAGE_SECRETS[stage] + ((tls_secret(stage),) if self.tls else ())
        if not names:
            return StageSecrets(provenance="nothing to fetch")
        worker = start_trusted(
            stage, self.cas_url, self.deployment, names=names, passphrase=self.passphrase
        )
        got = worker.secrets
        return StageSecrets(
            headend=headend_keys_from(got) if HEADEND_KEYS in names else None,
            anonymization_key=anonymization_key_from(got) if ANONYMIZATION_KEY in names else None,
            stage_key=(
                checked_stage_key(got[STAGE_KEY], f"the CAS {self.cas_url}")
                if STAGE_KEY in names
                else None
            ),
            billing_key=billing_key_from(got) if BILLING_KEY in names else None,
            tls=worker.tls_identity(),
            provenance=(
                f"CAS {self.cas_url}, measurement {worker.measurement.short}, {worker.assurance}"
            ),
        )
