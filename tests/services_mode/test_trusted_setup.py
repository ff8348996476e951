"""`provision_cas` (tests, demo, benches) leaves a deployment its CAS can serve from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from meterseal.accounts.token_key import TOKEN_KEY_FILE, token_key
from meterseal.deployment import init_deployment
from meterseal.services.trusted_setup import provision_cas


def test_provisioning_gives_an_older_deployment_the_token_key_cas_serve_needs(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "deployment"
    init_deployment(directory, now=dt.datetime.now(dt.UTC))
    (directory / TOKEN_KEY_FILE).unlink()  # as a deployment made before keys init made it
    provision_cas(directory, f"sqlite:///{tmp_path / 'cas.db'}")
    assert len(token_key(directory, None)) == 32  # `cas serve` reads it, never makes it
