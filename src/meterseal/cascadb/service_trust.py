"""CascaDB as a trusted stage: its CAS policy and secrets, and fetching them attested.

The paper runs CascaDB inside the enclave: the statements and the rows are sensitive. The
stage `cascadb` (measured as `STAGE_MODULES["cascadb"]`) receives from the CAS, after
attestation, only

* the key of its bucket (`cascadb/bucket/BUCKET`, 32 bytes): the KVS gateway's bucket key,
  derived from the KVS master secret by `provision_cascadb` inside the CAS's process, so
  CascaDB seals exactly as the gateway would (analysis jobs read its rows through the
  gateway) but can open no other bucket; it never holds the master secret;
* its TLS identity (`tls/cascadb`), issued by the deployment CA for the hosts given to
  `provision_cascadb`: the HTTPS API and the PostgreSQL protocol end inside the worker.

`attest_cascadb` measures, quotes (the simulated attestation backend unless hardware exists:
docs/trust.md) and fetches; a worker whose code changed, whose platform the CAS does not trust,
or that has no policy gets `ReleaseRefused` and no key, and `meterseal cascadb serve` does not
start. The keys are never written to a disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meterseal.errors import ConfigurationError
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service_trust import MASTER_BYTES, MASTER_SECRET, Provisioned
from meterseal.runtime.tls import TlsIdentity
from meterseal.trust.attestation import Attester
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.worker import start_trusted, tls_secret

if TYPE_CHECKING:  # the CAS's code is not CascaDB's: `cascadb provision` runs it
    from meterseal.trust.cas import Cas

CASCADB_STAGE = "cascadb"
KEY_BYTES = 32


def bucket_secret(bucket: str) -> str:
    """The CAS secret holding the key of CascaDB's bucket `bucket`."""
    return f"cascadb/bucket/{bucket}"


@dataclass(frozen=True)
class CascadbSecrets:
    """What the CAS released to the attested CascaDB."""

    bucket_key: bytes | None = field(repr=False)  # None: the database is in memory
    tls: TlsIdentity
    provenance: str  # "CAS URL, measurement …, simulated: no hardware guarantee"


def attest_cascadb(
    cas_url: str,
    deployment: Path,
    *,
    bucket: str | None,
    passphrase: bytes | None = None,
    attester: Attester | None = None,
    timeout: float = 10.0,
) -> CascadbSecrets:
    """Measure CascaDB, attest to the CAS, fetch its TLS identity and (with `bucket`) the
    bucket's key: all or none (module doc)."""
    names = [tls_secret(CASCADB_STAGE)]
    if bucket is not None:
        names.append(bucket_secret(bucket))
    worker = start_trusted(
        CASCADB_STAGE,
        cas_url,
        deployment,
        names=names,
        attester=attester,
        passphrase=passphrase,
        timeout=timeout,
    )
    identity = worker.tls_identity()
    if identity is None:  # asked for, so the CAS's all-or-nothing release broke its promise
        raise ConfigurationError(f"the CAS released no {tls_secret(CASCADB_STAGE)} to CascaDB")
    key = None
    if bucket is not None:
        key = worker.secrets[bucket_secret(bucket)]
        if len(key) != KEY_BYTES:
            raise ConfigurationError(
                f"the CAS's {bucket_secret(bucket)} has {len(key)} bytes, not {KEY_BYTES}"
            )
    provenance = f"CAS {cas_url}, measurement {worker.measurement.short}, {worker.assurance}"
    return CascadbSecrets(key, identity, provenance)


def _master(cas: Cas, rng: Callable[[int], bytes]) -> bytes:
    """The KVS master secret, made as the gateway's provisioning makes it when absent."""
    latest = cas.state.latest_secret(MASTER_SECRET)
    if latest is None:  # never replaced afterwards: every object of the store is sealed under it
        master = rng(MASTER_BYTES)
        cas.put_secret(MASTER_SECRET, master)
        return master
    return cas.vault.open(MASTER_SECRET, latest.version, latest.sealed)


def provision_cascadb(
    cas: Cas,
    rng: Callable[[int], bytes],
    *,
    buckets: Sequence[str] = (),
    issue_tls: Callable[[Cas, str], int] | None = None,
    hosts: Sequence[str] = (),
) -> Provisioned:
    """The buckets' keys (derived from the KVS master secret), a TLS identity, CascaDB's rule.

    A bucket key already in the CAS is kept when it is still the master's derivation. The TLS
    identity is issued (`issue_tls(cas, stage)`, the deployment CA's `issue_worker_tls`) once,
    for `hosts`; CascaDB serves only TLS, so a first provisioning without hosts is refused.
    """
    done: dict[str, tuple[int, bool]] = {}
    master = _master(cas, rng) if buckets else b""
    for bucket in buckets:
        name, key = bucket_secret(bucket), derive_bucket_key(master, bucket)
        latest = cas.state.latest_secret(name)
        if latest is not None and cas.vault.open(name, latest.version, latest.sealed) == key:
            done[name] = (latest.version, False)
        else:
            done[name] = (cas.put_secret(name, key), True)
    tls = tls_secret(CASCADB_STAGE)
    existing = cas.state.latest_secret(tls)
    if existing is not None:
        done[tls] = (existing.version, False)
    elif hosts and issue_tls is not None:
        done[tls] = (issue_tls(cas, CASCADB_STAGE), True)
    else:
        raise ConfigurationError(
            "CascaDB serves only TLS: give the hosts it answers at (--host) to issue its "
            "TLS identity"
        )
    measurement = stage_measurement(CASCADB_STAGE)
    cas.allow(CASCADB_STAGE, measurement, tuple(done))
    return Provisioned(measurement, done)
