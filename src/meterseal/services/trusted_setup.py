"""Provision a CAS for trusted mode: its keys, the deployment's secrets, one policy per stage.

What an operator does with `meterseal cas init`, `cas secrets import` and `cas policy add`,
as one function for benches, tests and the demo: each trusted stage's measurement of this
checkout (`stage_measurement`) is allowed exactly the secrets of its stage
(`keys.STAGE_SECRETS`), and nothing else is allowed anything.
"""

from __future__ import annotations

from pathlib import Path

from meterseal.deployment import load_deployment
from meterseal.services.catalog import TRUSTED_SERVICES
from meterseal.services.keys import STAGE_KEY, STAGE_SECRETS, ensure_stage_key
from meterseal.storage import Store
from meterseal.trust.cas import Cas
from meterseal.trust.cas_store import CasStore
from meterseal.trust.material import deployment_secrets
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.vault import Vault, init_cas_files


def provision_cas(directory: Path, store_url: str, passphrase: bytes | None = None) -> None:
    """Keys of the CAS and simulated platform, every secret, one policy per trusted stage."""
    init_cas_files(directory, passphrase)
    secrets = deployment_secrets(load_deployment(directory, passphrase))
    secrets[STAGE_KEY] = ensure_stage_key(directory, passphrase)
    with Store.open(store_url) as store:
        cas = Cas(CasStore(store), Vault.from_deployment(directory, passphrase), [])
        for name, value in secrets.items():
            cas.put_secret(name, value)
        for stage in TRUSTED_SERVICES:
            cas.allow(stage, stage_measurement(stage), STAGE_SECRETS[stage])
