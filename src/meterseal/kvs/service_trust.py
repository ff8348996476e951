"""The gateway as a trusted stage: its CAS policy and secrets, and fetching them attested.

`meterseal init` (through `provision_gateway`) puts the KVS master secret (32 random bytes)
into the CAS, with the deployment's hosts a TLS identity for the gateway (`tls/kvs-gateway`),
and allows exactly those to the gateway's measurement (`STAGE_MODULES["kvs-gateway"]`).
`attest_gateway` is what `meterseal kvs serve` does first: measure, quote (the simulated
attestation backend unless hardware exists: docs/trust.md), fetch. A gateway whose code
changed, or whose quote does not verify, gets a `ReleaseRefused` and no key: it does not start.
Bucket keys, the key table's and the manifests' keys all derive from the master secret
inside the gateway; no key of the KVS is ever written to a disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meterseal.errors import ConfigurationError
from meterseal.runtime.tls import TlsIdentity
from meterseal.trust.attestation import Attester
from meterseal.trust.measurement import Measurement, stage_measurement
from meterseal.trust.worker import start_trusted, tls_secret

if TYPE_CHECKING:  # the CAS's code is not the gateway's: `meterseal init` provisions it
    from meterseal.trust.cas import Cas

KVS_STAGE = "kvs-gateway"
MASTER_SECRET = "kvs/master"  # noqa: S105 - the secret's name in the CAS, not a secret
MASTER_BYTES = 32


@dataclass(frozen=True)
class GatewaySecrets:
    """What the CAS released to the attested gateway."""

    master: bytes = field(repr=False)
    tls: TlsIdentity | None
    provenance: str  # "CAS URL, measurement …, simulated: no hardware guarantee"


def gateway_secret_names(tls: bool) -> tuple[str, ...]:
    """The CAS secrets the gateway asks for (its TLS identity only when it serves HTTPS)."""
    return (MASTER_SECRET, tls_secret(KVS_STAGE)) if tls else (MASTER_SECRET,)


def attest_gateway(
    cas_url: str,
    deployment: Path,
    *,
    tls: bool = False,
    passphrase: bytes | None = None,
    attester: Attester | None = None,
    timeout: float = 10.0,
) -> GatewaySecrets:
    """Measure the gateway, attest to the CAS, fetch its secrets (all or none; module doc)."""
    worker = start_trusted(
        KVS_STAGE,
        cas_url,
        deployment,
        names=gateway_secret_names(tls),
        attester=attester,
        passphrase=passphrase,
        timeout=timeout,
    )
    master = worker.secrets[MASTER_SECRET]
    if len(master) != MASTER_BYTES:
        raise ConfigurationError(
            f"the CAS's {MASTER_SECRET} has {len(master)} bytes, not {MASTER_BYTES}"
        )
    identity = worker.tls_identity() if tls else None
    provenance = f"CAS {cas_url}, measurement {worker.measurement.short}, {worker.assurance}"
    return GatewaySecrets(master, identity, provenance)


@dataclass(frozen=True)
class Provisioned:
    """What `provision_gateway` did: the gateway's measurement, secrets (version, new)."""

    measurement: Measurement
    secrets: dict[str, tuple[int, bool]]

    @property
    def names(self) -> tuple[str, ...]:
        """The secrets the gateway may receive."""
        return tuple(self.secrets)


def provision_gateway(
    cas: Cas,
    rng: Callable[[int], bytes],
    *,
    issue_tls: Callable[[Cas, str], int] | None = None,
    hosts: Sequence[str] = (),
) -> Provisioned:
    """The master secret (kept if present), a TLS identity with hosts, the gateway's rule.

    `issue_tls(cas, stage)` issues the stage's TLS identity into the CAS (the deployment CA's
    `trusted_setup.issue_worker_tls`); it is called only with hosts and none exists yet.
    """
    done: dict[str, tuple[int, bool]] = {}
    latest = cas.state.latest_secret(MASTER_SECRET)
    if latest is None:  # never replaced: every object of the store is sealed under it
        done[MASTER_SECRET] = (cas.put_secret(MASTER_SECRET, rng(MASTER_BYTES)), True)
    else:
        done[MASTER_SECRET] = (latest.version, False)
    if hosts and issue_tls is not None:
        name = tls_secret(KVS_STAGE)
        existing = cas.state.latest_secret(name)
        done[name] = (
            (existing.version, False) if existing is not None else (issue_tls(cas, KVS_STAGE), True)
        )
    measurement = stage_measurement(KVS_STAGE)
    cas.allow(KVS_STAGE, measurement, tuple(done))
    return Provisioned(measurement, done)
