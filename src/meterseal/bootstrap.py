"""A new deployment in one step: keys, CAS state, every trusted stage's policy and secrets.

`bootstrap(directory, options, now=…)` does what these would, in order, on one directory:
`keys init` (CA, head-end, billing, metrology, anonymization keys), `cas init` (CAS master
key, simulated platform keys), the stage link key, `cas secrets import` (every secret of every
trusted stage), `cas policy add` for every trusted stage with this checkout's measurement
(`stage_measurement`), and, when hosts are given, TLS: a certificate for the CAS and a TLS
identity in the CAS for each trusted stage. The dissemination router's and aggregator's
secrets and rules (`dissemination.provision`) are added by the caller, which owns the router's
key files. The configuration file is written by `meterseal.cli_init`.

A directory that holds anything is refused unless `force`; with it, nothing that exists is
replaced: existing keys are loaded and kept, existing CAS files kept, a secret whose value is
already the latest version is not stored again, and a rule that exists is not added twice.
So `force` completes a deployment (and allows a new checkout's measurements after an upgrade).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meterseal.deployment import (
    MANIFEST,
    SHARED_SECRETS,
    Deployment,
    ensure_shared_secrets,
    init_deployment,
    issue_tls_identity,
    keys_encrypted,
    load_deployment,
)
from meterseal.errors import ConfigurationError, KeyFileError
from meterseal.services.catalog import TRUSTED_SERVICES
from meterseal.services.keys import STAGE_SECRETS
from meterseal.services.trusted_setup import issue_worker_tls, trusted_secrets
from meterseal.trust.cas import Cas
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.vault import init_cas_files
from meterseal.trust.worker import tls_secret

CAS_TLS = "cas"  # the CAS's certificate: DIRECTORY/tls/cas.{cert,key}.pem
Step = Callable[[str], None]


@dataclass(frozen=True)
class InitOptions:
    """What `meterseal init` was asked for."""

    ca_name: str = "meterseal utility CA"
    passphrase: bytes | None = field(default=None, repr=False)
    tls_hosts: tuple[str, ...] = ()  # TLS for the CAS and the trusted workers, for these hosts
    force: bool = False


@dataclass
class InitReport:
    """What was created, what was kept, and the ids the next commands need."""

    deployment: Deployment | None = None
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    secrets: dict[str, tuple[int, bool]] = field(default_factory=dict)  # name -> (version, new)
    policies: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    def note(self, what: str, new: bool) -> None:
        """Record `what` as created or kept."""
        (self.created if new else self.kept).append(what)


def check_directory(directory: Path, force: bool) -> None:
    """Refuse a non-empty directory (keys are never overwritten) unless `force`."""
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"{directory} exists and is not a directory")
    if force or not directory.exists() or not any(directory.iterdir()):
        return
    raise ConfigurationError(
        f"{directory} is not empty: `meterseal init` writes a deployment's keys there and "
        "never overwrites one; choose a new or empty directory, or give --force to complete "
        "this one (every existing key and file is kept)"
    )


def check_store(store_url: str, shown: str) -> None:
    """Refuse a store that holds a deployment already: its CAS secrets or meters are another's."""
    from meterseal.storage import Store
    from meterseal.trust.cas_store import CasStore

    with Store.open(store_url) as store:
        if not CasStore(store).secret_infos() and not store.meter_rows():
            return
    # A second deployment there would mix its CAS state and meters with the first's (the
    # vault then fails on a secret it cannot open, after keys were written).
    raise ConfigurationError(
        f"the store {shown} already holds a deployment (CAS secrets or meters): give this one "
        "its own store (--store), or on a shared PostgreSQL database its own --name (its "
        "schema); --force completes the deployment whose keys are in DIR"
    )


def deployment_keys(
    directory: Path, options: InitOptions, report: InitReport, *, now: dt.datetime
) -> Deployment:
    """The deployment's keys: created, or (with force) the existing ones loaded and kept."""
    if (directory / MANIFEST).exists():
        if options.passphrase is None and keys_encrypted(directory):
            raise KeyFileError(f"the deployment in {directory} is encrypted: set the passphrase")
        deployment = load_deployment(directory, options.passphrase)
        report.note(f"deployment keys {directory} (CA sha256 {fingerprint(deployment)})", False)
        shared = ensure_shared_secrets(directory, options.passphrase)  # a deployment made before
    else:
        deployment = init_deployment(
            directory, name=options.ca_name, passphrase=options.passphrase, now=now
        )
        report.note(f"deployment keys {directory} (CA sha256 {fingerprint(deployment)})", True)
        shared = dict.fromkeys(SHARED_SECRETS, True)  # init_deployment made them
    for name, new in shared.items():
        report.note(str(directory / name), new)
    return deployment


def fingerprint(deployment: Deployment) -> str:
    """The CA certificate's SHA-256, in hex (what an operator compares out of band)."""
    from cryptography.hazmat.primitives import hashes

    return deployment.ca_cert.fingerprint(hashes.SHA256()).hex()


def cas_files(directory: Path, options: InitOptions, report: InitReport) -> None:
    """The CAS master key and the simulated platform's keys (kept if present)."""
    for name, new in init_cas_files(directory, options.passphrase).items():
        report.note(str(directory / name), new)


def import_secrets(cas: Cas, directory: Path, options: InitOptions, report: InitReport) -> None:
    """Every secret of every trusted stage into the CAS; one equal to its latest is kept."""
    values = trusted_secrets(directory, options.passphrase)  # the stage key: deployment_keys
    for name, value in values.items():
        report.secrets[name] = put_unless_same(cas, name, value)


def put_unless_same(cas: Cas, name: str, value: bytes) -> tuple[int, bool]:
    """Store `value` as `name` unless it is the latest version; (version, stored now)."""
    latest = cas.state.latest_secret(name)
    if latest is not None and cas.vault.open(name, latest.version, latest.sealed) == value:
        return latest.version, False
    return cas.put_secret(name, value), True


def allow_trusted_stages(
    cas: Cas, deployment: Deployment, options: InitOptions, report: InitReport
) -> None:
    """One rule per trusted stage: this checkout's measurement gets exactly its secrets."""
    for stage in TRUSTED_SERVICES:
        names = STAGE_SECRETS[stage]
        if options.tls_hosts:
            latest = cas.state.latest_secret(tls_secret(stage))
            if latest is not None:  # --force: the stage keeps its TLS key (`issue-tls` renews)
                report.secrets[tls_secret(stage)] = (latest.version, False)
            else:
                version = issue_worker_tls(
                    cas, deployment.ca_key, deployment.ca_cert, stage, options.tls_hosts
                )
                report.secrets[tls_secret(stage)] = (version, True)
            names += (tls_secret(stage),)
        measurement = stage_measurement(stage)
        cas.allow(stage, measurement, names)  # an existing rule is not added twice
        report.policies[stage] = (measurement.hex, names)


def cas_certificate(
    deployment: Deployment, options: InitOptions, report: InitReport, *, now: dt.datetime
) -> None:
    """With hosts: the CAS's TLS certificate (DIRECTORY/tls/cas.*), unless one exists."""
    if not options.tls_hosts:
        return
    from meterseal.deployment import tls_identity_paths

    cert_path, _ = tls_identity_paths(deployment.directory, CAS_TLS)
    if cert_path.exists():
        report.note(str(cert_path), False)
        return
    cert_path, key_path = issue_tls_identity(
        deployment, CAS_TLS, options.tls_hosts, passphrase=options.passphrase, now=now
    )
    report.note(f"{cert_path} and {key_path} (CAS, for {', '.join(options.tls_hosts)})", True)


def bootstrap(
    directory: Path,
    store_url: str,
    options: InitOptions,
    *,
    now: dt.datetime,
    step: Step = lambda _what: None,
    extra: Sequence[tuple[str, Callable[[Cas, InitReport], None]]] = (),
) -> InitReport:
    """Keys, CAS state, secrets and rules of every trusted stage in `directory` and the store.

    `extra` (label, function) run with the CAS before it is closed (the dissemination
    stages' provisioning).
    """
    from meterseal.storage import Store
    from meterseal.trust.cas_store import CasStore
    from meterseal.trust.vault import Vault

    check_directory(directory, options.force)
    report = InitReport()
    step("deployment keys (RSA-4096 takes a moment)")
    deployment = deployment_keys(directory, options, report, now=now)
    report.deployment = deployment
    step("CAS keys")
    cas_files(directory, options, report)
    cas_certificate(deployment, options, report, now=now)
    with Store.open(store_url) as store:
        cas = Cas(CasStore(store), Vault.from_deployment(directory, options.passphrase), [])
        step("secrets")
        import_secrets(cas, directory, options, report)
        step("policies (measuring each trusted stage)")
        allow_trusted_stages(cas, deployment, options, report)
        for label, more in extra:
            step(label)
            more(cas, report)
    return report
