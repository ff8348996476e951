"""Trusted mode reads the simulated platform's key with the services' passphrase."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from meterseal.errors import ConfigurationError, KeyFileError
from meterseal.services.catalog import ServiceOptions, key_source
from meterseal.trust.errors import CasUnavailable
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


def test_a_released_stage_key_of_the_wrong_size_stops_the_stage_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the CAS released after `--file stage-link.key` stored the file as it lay: the
    # stage said ready, then crashed on its first message (AES-GCM); now it does not start.
    from meterseal.trust.measurement import Measurement

    class Released:
        secrets: ClassVar[dict[str, bytes]] = {
            "headend-keys": b"",
            "stage-key": b"meterseal-secret-v1\x00\x00" + b"k" * 32,
        }
        measurement = Measurement(b"\x01" * 32)
        assurance = "simulated: no hardware guarantee"

        def tls_identity(self) -> None:
            return None

    monkeypatch.setattr("meterseal.services.attested.start_trusted", lambda *a, **k: Released())
    monkeypatch.setattr("meterseal.services.attested.headend_keys_from", lambda got: None)
    source = key_source(ServiceOptions(tmp_path, "sqlite://", cas_url=NOWHERE))
    with pytest.raises(ConfigurationError, match=r"stage-key from the CAS .* is 53 bytes, not 32"):
        source.secrets("open-verify")
