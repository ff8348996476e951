"""The trusted worker runtime: measure this process's stage, attest, fetch its secrets.

`start_trusted(stage, cas_url, deployment_dir)` is what a trusted stage's process calls at
start, before it handles any data: it measures the stage's modules and configuration
(`stage_measurement`; the files are hashed, not imported), quotes the measurement with the
platform's attester (the simulated one from the deployment directory unless given), and
fetches the stage's secrets from the CAS. A worker whose code or configuration changed gets
a ReleaseRefused whose diagnostics name its measurement and the secret it was refused.

With `sealed_dir`, the released secrets are also sealed to the measurement at rest
(`sealing`), so an operator can see that a changed worker cannot read what an earlier one kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meterseal.trust.attestation import Attester, SimulatedAttester
from meterseal.trust.client import fetch_release
from meterseal.trust.measurement import Measurement, stage_measurement
from meterseal.trust.sealing import load_sealing_secret, seal_to_file


@dataclass(frozen=True)
class TrustedWorker:
    """A started trusted stage: its measurement, its secrets, how long starting took."""

    stage: str
    measurement: Measurement
    secrets: dict[str, bytes] = field(repr=False)
    versions: dict[str, int]
    assurance: str
    measure_seconds: float
    fetch_seconds: float


def start_trusted(
    stage: str,
    cas_url: str,
    deployment_dir: Path,
    *,
    names: Sequence[str],
    config: Mapping[str, object] | None = None,
    attester: Attester | None = None,
    timeout: float = 10.0,
    sealed_dir: Path | None = None,
    passphrase: bytes | None = None,
) -> TrustedWorker:
    """Measure, attest and fetch the secrets `names` from the CAS (all or none)."""
    started = time.perf_counter()
    measurement = stage_measurement(stage, config)
    measured = time.perf_counter()
    fetched = fetch_release(
        cas_url,
        stage=stage,
        measurement=measurement,
        attester=attester or SimulatedAttester.from_deployment(deployment_dir, passphrase),
        names=names,
        timeout=timeout,
    )
    done = time.perf_counter()
    if sealed_dir is not None:
        platform_secret = load_sealing_secret(deployment_dir, passphrase)
        for name, value in fetched.secrets.items():
            path = sealed_dir / f"{stage}.{name.replace('/', '_')}.sealed"
            seal_to_file(path, value, measurement, platform_secret, label=name)
    return TrustedWorker(
        stage,
        measurement,
        fetched.secrets,
        fetched.versions,
        fetched.assurance,
        measured - started,
        done - measured,
    )
