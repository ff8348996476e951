"""`meterseal cas …` end to end: a real `cas serve` process and real worker processes.

A worker process attests and fetches its secret; the same worker with one changed byte of
code (a copy of the package on PYTHONPATH) is refused and says why; after revocation and
rotation the original worker is refused too; the log verifies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import meterseal
from tests.command_line import invoke

STAGE = "anonymize-store"
SECRET = "anonymization-key"


def _text(output: str) -> str:
    return " ".join(output.split())


def _cas(*args: str) -> str:
    result = invoke(["cas", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return _text(result.output)


def _worker(
    url: str, deployment: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"COLUMNS": "200"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = ["fetch", "--cas", url, "--stage", STAGE, "--secret", SECRET, "-d", str(deployment)]
    return subprocess.run(
        [sys.executable, "-m", "meterseal", "cas", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A deployment dir, a SQLite store and a `cas serve` process: (url, dir, store)."""
    with _serving(tmp_path) as started:
        yield started


@pytest.fixture
def served_encrypted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path, str]]:
    """`served` with MS_PASSPHRASE set for `cas init`, `cas serve` and the workers."""
    monkeypatch.setenv("MS_PASSPHRASE", "correct horse battery staple")
    with _serving(tmp_path) as started:
        yield started


@contextmanager
def _serving(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    deployment, store = tmp_path / "dep", f"sqlite:///{tmp_path / 'cas.db'}"
    text = _cas("init", "-d", str(deployment))
    assert "created" in text
    assert "simulated: no hardware guarantee" in text
    for name in ("cas-master.key", "platform-attestation.key.pem", "platform-sealing.key"):
        assert (deployment / name).stat().st_mode & 0o777 == 0o600
    command = ["cas", "serve", "--store", store, "-d", str(deployment), "--listen", "127.0.0.1:0"]
    with subprocess.Popen(
        [sys.executable, "-m", "meterseal", *command], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            # The skeleton announces its admin endpoint, then the CAS's own.
            lines = [process.stdout.readline() for _ in range(2)]
            line = next((x for x in lines if x.startswith("listening cas ")), "")
            assert line.startswith("listening cas http://127.0.0.1:"), lines
            yield line.split()[-1], deployment, store
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def _modified_copy(tmp_path: Path) -> Path:
    """A copy of the meterseal package with one byte of the worker's client changed."""
    source = Path(meterseal.__file__).parent
    target = tmp_path / "modified" / "meterseal"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    client = target / "trust" / "client.py"
    client.write_bytes(client.read_bytes() + b"#")
    return target.parent


def test_worker_processes_against_a_served_cas(
    served: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, deployment, store = served
    common = ["--store", store, "-d", str(deployment)]
    secret_file = tmp_path / "anon.key"
    secret_file.write_bytes(b"k" * 32)
    assert f"{SECRET}: v1" in _cas(
        "secrets", "import", "--name", SECRET, "--file", str(secret_file), *common
    )
    assert "unchanged (v1)" in _cas(
        "secrets", "import", "--name", SECRET, "--file", str(secret_file), *common
    )
    added = _cas("policy", "add", "--stage", STAGE, "--secret", SECRET, *common)
    measurement = added.split()[1]
    assert _cas("measure", "--stage", STAGE) == measurement

    fetched = _worker(url, deployment)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert f"released {SECRET} v1 (32 bytes, sha256" in fetched.stdout
    assert "k" * 32 not in fetched.stdout

    modified = _worker(url, deployment, _modified_copy(tmp_path))
    assert modified.returncode == 2
    said = _text(modified.stdout + modified.stderr)
    assert f"is not allowed secret '{SECRET}' (code modified?)" in said
    assert f"the policy lets stage {STAGE} run as {measurement[:12]}…" in said

    revoked = _cas("policy", "revoke", measurement, "--reason", "test", *common)
    assert f"it received {SECRET} v1: rotate it" in revoked
    assert f"{SECRET}: rotated to v2" in _cas(
        "secrets", "rotate", SECRET, "--random", "32", *common
    )
    again = _worker(url, deployment)
    assert again.returncode == 2
    assert "is revoked" in _text(again.stdout + again.stderr)

    listed = _cas("policy", "list", *common)
    assert "revoked" in listed
    assert measurement[:16] in listed
    assert f"{SECRET} │ v2 │ 2 │" in _cas("secrets", "list", *common)
    log = _cas("log", *common)
    assert "verified" in log
    assert "released" in log
    assert "refused" in log


def test_admin_commands_refuse_bad_input_cleanly(tmp_path: Path) -> None:
    deployment, store = tmp_path / "dep", f"sqlite:///{tmp_path / 'cas.db'}"
    _cas("init", "-d", str(deployment))
    common = ["--store", store, "-d", str(deployment)]
    for args, expected in (
        (["policy", "revoke", "3fa2", *common], "64 hex digits"),
        (
            ["policy", "add", "--stage", "open-verify", "--secret", "BAD NAME", *common],
            "secret names",
        ),
        (["secrets", "rotate", "missing", "--random", "32", *common], "import it first"),
        (["measure", "--stage", "oven"], "no trusted stage 'oven'"),
        (["serve", *common, "--backend", "sgx"], "unknown backend 'sgx'"),
    ):
        result = invoke(["cas", *args], env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert expected in _text(result.output)
    no_keys = invoke(
        ["cas", "log", "--store", store, "-d", str(tmp_path / "none")], env={"COLUMNS": "300"}
    )
    assert no_keys.exit_code == 2
    assert "run `meterseal cas init" in _text(no_keys.output)


def test_a_worker_attests_with_the_encrypted_platform_key(
    served_encrypted: tuple[str, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, deployment, store = served_encrypted
    common = ["--store", store, "-d", str(deployment)]
    secret_file = tmp_path / "anon.key"
    secret_file.write_bytes(b"k" * 32)
    _cas("secrets", "import", "--name", SECRET, "--file", str(secret_file), *common)
    _cas("policy", "add", "--stage", STAGE, "--secret", SECRET, *common)
    fetched = _worker(url, deployment)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert f"released {SECRET} v1" in fetched.stdout

    monkeypatch.delenv("MS_PASSPHRASE")
    refused = _worker(url, deployment)
    assert refused.returncode == 2
    said = _text(refused.stderr)
    assert f"{deployment / 'platform-attestation.key.pem'} is encrypted: set MS_PASSPHRASE" in said
    assert "Traceback" not in refused.stderr
