"""`meterseal cas secrets revoke NAME`: the secret is listed revoked and released to nobody until
`cas secrets rotate` stores a new version, which `list` shows released again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from meterseal.deployment import init_deployment
from tests.command_line import invoke


def _run(*args: str) -> str:
    result = invoke(["cas", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_secret_revoked_then_rotated(tmp_path: Path) -> None:
    directory = tmp_path / "dep"
    init_deployment(directory, now=dt.datetime.now(dt.UTC))
    assert invoke(["cas", "init", "-d", str(directory)]).exit_code == 0
    common = ["-d", str(directory), "--store", f"sqlite:///{tmp_path / 'cas.db'}"]
    (tmp_path / "pw").write_bytes(b"0123456789abcdef")
    _run("secrets", "import", "--name", "db-password", "--file", str(tmp_path / "pw"), *common)
    said = _run("secrets", "revoke", "db-password", "--reason", "leaked", *common)
    assert "db-password: revoked through v1" in said
    assert "already revoked through v1" in _run("secrets", "revoke", "db-password", *common)
    assert "revoked through v1" in _run("secrets", "list", *common)
    assert "rotated to v2" in _run("secrets", "rotate", "db-password", "--random", "16", *common)
    listed = _run("secrets", "list", *common)
    assert "released" in listed
    assert "revoked through" not in listed
    assert "secret-revoked" in _run("log", *common)
    missing = invoke(["cas", "secrets", "revoke", "nope", *common])
    assert missing.exit_code == 2
    assert "no secret 'nope' to revoke" in missing.output
