"""Trusted mode reads the simulated platform's key with the services' passphrase."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterseal.errors import KeyFileError
from meterseal.services.catalog import ServiceOptions, key_source
from meterseal.trust.client import CasUnavailable
from meterseal.trust.vault import init_cas_files

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers HTTP there


def test_attesting_opens_the_encrypted_platform_key_with_the_passphrase(tmp_path: Path) -> None:
    init_cas_files(tmp_path, b"pw")
    without = key_source(ServiceOptions(tmp_path, "sqlite://", cas_url=NOWHERE))
    with pytest.raises(KeyFileError, match=r"platform-attestation\.key\.pem is encrypted"):
        without.secrets("open-verify")
    given = key_source(ServiceOptions(tmp_path, "sqlite://", cas_url=NOWHERE, passphrase=b"pw"))
    with pytest.raises(CasUnavailable):  # the key opened: attesting went on to the network
        given.secrets("open-verify")
