"""The trusted worker runtime: measure this process's stage, attest, fetch its secrets.

`start_trusted(stage, cas_url, deployment_dir)` is what a trusted stage's process calls at
start, before it handles any data: it measures the stage's modules and configuration
(`stage_measurement`; the files are hashed, not imported), quotes the measurement with the
platform's attester (the simulated one from the deployment directory unless given), and
fetches the stage's secrets from the CAS. A worker whose code or configuration changed gets
a ReleaseRefused whose diagnostics name its measurement and the secret it was refused.

Over ``https://`` the CAS is verified against the deployment's CA. A worker that serves
HTTPS asks for its TLS identity too (`tls_secret(stage)`: key and certificate chain, which
the CAS releases only to the attested measurement) and serves with `TrustedWorker.tls_identity`,
so TLS ends inside the trusted worker and its key is never read from a disk.

With `sealed_dir`, the released secrets are also sealed to the measurement at rest
(`sealing`), so an operator can see that a changed worker cannot read what an earlier one kept.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meterseal.deployment import load_ca_certificate
from meterseal.runtime.tls import TlsIdentity, client_context
from meterseal.trust.attestation import Attester, SimulatedAttester
from meterseal.trust.client import fetch_release
from meterseal.trust.measurement import Measurement, stage_measurement
from meterseal.trust.sealing import load_sealing_secret, seal_to_file


def tls_secret(stage: str) -> str:
    """The CAS secret holding `stage`'s TLS key and certificate chain."""
    return f"tls/{stage}"


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

    def tls_identity(self) -> TlsIdentity | None:
        """The TLS identity the CAS released to this worker, if it asked for one."""
        pem = self.secrets.get(tls_secret(self.stage))
        return None if pem is None else TlsIdentity.from_pem(pem)


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
    verify: ssl.SSLContext | None = None,
) -> TrustedWorker:
    """Measure, attest and fetch the secrets `names` from the CAS (all or none)."""
    started = time.perf_counter()
    measurement = stage_measurement(stage, config)
    measured = time.perf_counter()
    if verify is None and cas_url.startswith("https:"):
        verify = client_context(load_ca_certificate(deployment_dir))
    fetched = fetch_release(
        cas_url,
        stage=stage,
        measurement=measurement,
        attester=attester or SimulatedAttester.from_deployment(deployment_dir, passphrase),
        names=names,
        timeout=timeout,
        verify=verify,
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
