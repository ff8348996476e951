"""`meterseal cas secrets import|rotate`: every secret the trusted stages need, files unwrapped.

The stage link key was skipped by `import`, and `--file stage-link.key` stored the file as
meterseal keeps it (the at-rest header, or the encrypted form) instead of its 32 bytes: the
open-verify stage then failed at its first bus message while it said it was ready.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from meterseal.crypto.at_rest import read_secret_file
from meterseal.deployment import init_deployment
from meterseal.services.catalog import TRUSTED_SERVICES
from meterseal.services.keys import STAGE_KEY, STAGE_KEY_FILE, STAGE_SECRETS
from meterseal.storage import Store
from meterseal.trust.cas_store import CasStore
from meterseal.trust.vault import Vault
from tests.command_line import invoke

PASSPHRASE = "correct horse battery staple"


def _stored(directory: Path, store: str, passphrase: bytes | None) -> dict[str, bytes]:
    vault = Vault.from_deployment(directory, passphrase)
    with Store.open(store) as db:
        state = CasStore(db)
        out = {}
        for info in state.secret_infos():
            latest = state.latest_secret(info.name)
            assert latest is not None
            out[info.name] = vault.open(info.name, latest.version, latest.sealed)
        return out


@pytest.fixture
def encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A deployment with its keys (and the CAS's) encrypted under MS_PASSPHRASE, a CAS store."""
    monkeypatch.setenv("MS_PASSPHRASE", PASSPHRASE)
    directory = tmp_path / "dep"
    init_deployment(directory, passphrase=PASSPHRASE.encode(), now=dt.datetime.now(dt.UTC))
    assert invoke(["cas", "init", "-d", str(directory)]).exit_code == 0
    return directory, f"sqlite:///{tmp_path / 'cas.db'}"


def test_import_covers_every_secret_of_every_trusted_stage(encrypted: tuple[Path, str]) -> None:
    directory, store = encrypted
    result = invoke(["cas", "secrets", "import", "-d", str(directory), "--store", store])
    assert result.exit_code == 0, result.output
    needed = {name for stage in TRUSTED_SERVICES for name in STAGE_SECRETS[stage]}
    stored = _stored(directory, store, PASSPHRASE.encode())
    assert needed <= set(stored), f"missing: {needed - set(stored)}"
    assert f"{STAGE_KEY}: v1" in result.output
    on_disk = read_secret_file(directory / STAGE_KEY_FILE, PASSPHRASE.encode())
    assert stored[STAGE_KEY] == on_disk
    assert len(on_disk) == 32
    again = invoke(["cas", "secrets", "import", "-d", str(directory), "--store", store])
    assert f"{STAGE_KEY}: unchanged (v1)" in again.output


def test_an_imported_key_file_is_unwrapped_not_stored_as_it_lies(
    encrypted: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, store = encrypted
    key_file = directory / STAGE_KEY_FILE
    assert key_file.exists()  # made with the deployment, like every secret replicas share
    common = ["-d", str(directory), "--store", store]
    assert invoke(["cas", "secrets", "import", *common]).exit_code == 0
    key = read_secret_file(key_file, PASSPHRASE.encode())
    assert key_file.read_bytes() != key  # the file is the encrypted form
    one = ["cas", "secrets", "import", "--name", STAGE_KEY, "--file", str(key_file), *common]
    assert f"{STAGE_KEY}: unchanged (v1)" in invoke(one).output  # the same 32 bytes
    rotate = ["cas", "secrets", "rotate", STAGE_KEY, "--file", str(key_file), *common]
    assert f"{STAGE_KEY}: rotated to v2" in invoke(rotate).output
    assert _stored(directory, store, PASSPHRASE.encode())[STAGE_KEY] == key
    # Without the passphrase the encrypted file is refused, not stored as it lies.
    monkeypatch.delenv("MS_PASSPHRASE")
    refused = invoke(["cas", "secrets", "import", "--name", STAGE_KEY, "--file", str(key_file),
                      *common])  # fmt: skip
    assert refused.exit_code != 0
    assert "is encrypted: set MS_PASSPHRASE" in " ".join(refused.output.split())


def test_a_value_that_is_not_what_its_name_holds_is_refused(
    encrypted: tuple[Path, str], tmp_path: Path
) -> None:
    directory, store = encrypted
    common = ["-d", str(directory), "--store", store]
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"x" * 40)
    for name, said in ((STAGE_KEY, "is 40 bytes, not 32"), ("billing-key", "not a private key")):
        result = invoke(["cas", "secrets", "import", "--name", name, "--file", str(wrong), *common])
        assert result.exit_code != 0
        assert said in " ".join(result.output.split()), result.output
    assert _stored(directory, store, PASSPHRASE.encode()) == {}
