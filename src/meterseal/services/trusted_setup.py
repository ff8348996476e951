"""Provision a CAS for trusted mode: its keys, the deployment's secrets, one policy per stage.

What an operator does with `meterseal cas init`, `cas secrets import` and `cas policy add`,
as one function for benches, tests and the demo: each trusted stage's measurement of this
checkout (`stage_measurement`) is allowed exactly the secrets of its stage
(`keys.STAGE_SECRETS`), and nothing else is allowed anything.

`issue_worker_tls` gives a trusted stage a TLS identity from the deployment CA straight into
the CAS (`tls/STAGE`): its key is never written to a disk, and only the stage's attested
measurement receives it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.commands.keys import COMMAND_KEY as COMMAND_KEY_FILE
from meterseal.commands.keys import load_operator_key
from meterseal.crypto import at_rest
from meterseal.crypto.certs import issue_service_certificate
from meterseal.deployment import Deployment, ensure_shared_secrets, load_deployment
from meterseal.errors import ConfigurationError
from meterseal.runtime.tls import TlsIdentity
from meterseal.services.catalog import TRUSTED_SERVICES
from meterseal.services.keys import STAGE_KEY, STAGE_SECRETS, checked_stage_key, ensure_stage_key
from meterseal.storage import Store
from meterseal.trust.cas import Cas
from meterseal.trust.cas_store import CasStore
from meterseal.trust.material import (
    ANONYMIZATION_KEY,
    BILLING_KEY,
    COMMAND_KEY,
    HEADEND_KEYS,
    anonymization_key_from,
    billing_key_from,
    command_key_from,
    deployment_secrets,
    headend_keys_from,
)
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.vault import Vault, init_cas_files
from meterseal.trust.worker import tls_secret


def trusted_secrets(directory: Path, passphrase: bytes | None = None) -> dict[str, bytes]:
    """Every secret the trusted stages need (`keys.STAGE_SECRETS`), by CAS name.

    The deployment's keys and the stage link key (created on first use, as services mode does).
    """
    secrets = deployment_secrets(load_deployment(directory, passphrase))
    secrets[STAGE_KEY] = ensure_stage_key(directory, passphrase)
    if (directory / COMMAND_KEY_FILE).exists():  # the meter commands' key, once made
        key = load_operator_key(directory, passphrase).private_key
        secrets[COMMAND_KEY] = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return secrets


def checked_secret(name: str, value: bytes, source: str) -> bytes:
    """`value` if it holds what secret `name` must (for the names the stages use)."""
    checks = {
        HEADEND_KEYS: headend_keys_from,
        ANONYMIZATION_KEY: anonymization_key_from,
        BILLING_KEY: billing_key_from,
        COMMAND_KEY: command_key_from,
    }
    if name == STAGE_KEY:
        checked_stage_key(value, source)
    elif name in checks:
        checks[name]({name: value})  # MaterialError says what is wrong with it
    return value


def secret_file(path: Path, passphrase: bytes | None) -> bytes:
    """A secret's bytes from `path`: a key file as meterseal stores it is unwrapped first.

    Files meterseal writes (`stage-link.key`, …) are in the at-rest form of `crypto.at_rest`;
    their content, not the stored form, is the secret. An encrypted one needs the passphrase.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    if at_rest.is_sealed_form(data):
        return at_rest.unseal(data, passphrase, path)
    return data


def issue_worker_tls(
    cas: Cas,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    stage: str,
    hosts: Sequence[str],
) -> int:
    """Issue `stage` a TLS key and certificate for `hosts` into the CAS only; its version."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = issue_service_certificate(
        ca_key,
        ca_cert,
        stage,
        key.public_key(),
        hosts=hosts,
        now=now,
        rng=os.urandom,
    )
    return cas.put_secret(tls_secret(stage), TlsIdentity((cert,), key).pem())


def tls_issuer(keys: Callable[[], Deployment], hosts: Sequence[str]) -> Callable[[Cas, str], int]:
    """A service provisioning's `issue_tls`: `issue_worker_tls` for `hosts` from the CA of the
    deployment `keys()` gives, which is asked for only when an identity is issued."""

    def issue(cas: Cas, stage: str) -> int:
        deployment = keys()
        return issue_worker_tls(cas, deployment.ca_key, deployment.ca_cert, stage, hosts)

    return issue


def provision_cas(
    directory: Path,
    store_url: str,
    passphrase: bytes | None = None,
    *,
    worker_tls_hosts: Sequence[str] = (),
) -> None:
    """Keys of the CAS and simulated platform, every secret, one policy per trusted stage.

    With `worker_tls_hosts`, each trusted stage also gets a TLS identity for those hosts.
    """
    init_cas_files(directory, passphrase)
    ensure_shared_secrets(directory, passphrase)  # as `cas init` (token key) and `keys shared`
    deployment = load_deployment(directory, passphrase)
    secrets = trusted_secrets(directory, passphrase)
    with Store.open(store_url) as store:
        cas = Cas(CasStore(store), Vault.from_deployment(directory, passphrase), [])
        for name, value in secrets.items():
            cas.put_secret(name, value)
        for stage in TRUSTED_SERVICES:
            names = STAGE_SECRETS[stage]
            if worker_tls_hosts:
                issue_worker_tls(
                    cas, deployment.ca_key, deployment.ca_cert, stage, worker_tls_hosts
                )
                names += (tls_secret(stage),)
            cas.allow(stage, stage_measurement(stage), names)
