"""The secrets replicas share are made with the deployment, never by a server at its start.

`keys init` (and `init`, `cas init`) make the token key and the stage link key, encrypted under
MS_PASSPHRASE; `keys shared` makes them in a deployment made before; `bills serve` and `cas
serve` refuse to start without the token key instead of making one of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterseal.crypto.at_rest import is_encrypted, read_secret_file
from meterseal.deployment import SHARED_SECRETS
from meterseal.storage import Store
from tests.command_line import invoke

PASSPHRASE = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`keys init` with a passphrase (RSA-4096: once for the module)."""
    directory = tmp_path_factory.mktemp("keys") / "deployment"
    result = invoke(["keys", "init", str(directory)], env={"MS_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output
    return directory


def test_keys_init_makes_the_shared_secrets_encrypted(deployment: Path) -> None:
    for name in SHARED_SECRETS:
        path = deployment / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert is_encrypted(path.read_bytes()), name
        assert len(read_secret_file(path, PASSPHRASE.encode())) == 32


def test_keys_shared_completes_an_older_deployment_and_keeps_what_exists(
    deployment: Path,
) -> None:
    env = {"MS_PASSPHRASE": PASSPHRASE}
    kept = {name: (deployment / name).read_bytes() for name in SHARED_SECRETS}
    (deployment / "auth-token.key").unlink()  # a deployment from before keys init made it
    result = invoke(["keys", "shared", "-d", str(deployment)], env=env)
    assert result.exit_code == 0, result.output
    assert f"created {deployment / 'auth-token.key'}" in result.output
    assert f"kept    {deployment / 'stage-link.key'}" in result.output
    assert (deployment / "stage-link.key").read_bytes() == kept["stage-link.key"]
    assert is_encrypted((deployment / "auth-token.key").read_bytes())
    again = invoke(["keys", "shared", "-d", str(deployment)], env=env)
    assert "created" not in again.output
    refused = invoke(["keys", "shared", "-d", str(deployment)], env={"MS_PASSPHRASE": None})
    assert refused.exit_code == 2
    assert "keeps its keys encrypted" in refused.output


def _serve(args: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MS_CONFIG": "none"}
    command = [sys.executable, "-m", "meterseal", *args, "-d", str(directory)]
    # A server that made its own key would serve on: the timeout fails the test then.
    return subprocess.run(
        [*command, "--listen", "127.0.0.1:0", "--admin", "off"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("server", ["bills", "cas"])
def test_a_server_without_the_token_key_refuses_to_start(tmp_path: Path, server: str) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    Store.open(url).close()
    directory = tmp_path / "deployment"
    directory.mkdir(mode=0o700)
    if server == "cas":
        result = invoke(["cas", "init", "-d", str(directory)])
        assert result.exit_code == 0, result.output
        assert (directory / "auth-token.key").exists()  # cas init makes it
        (directory / "auth-token.key").unlink()
    done = _serve([server, "serve", "--store", url], directory)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"no token key {directory / 'auth-token.key'}" in " ".join(done.stderr.split())
    assert not (directory / "auth-token.key").exists()
