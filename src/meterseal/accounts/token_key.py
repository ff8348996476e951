"""The deployment's token key file (`auth-token.key`): made with the deployment, read by servers.

Apart from `credentials` (which needs the `api` extra's PyJWT and argon2) so that `keys init`,
in the core install, makes it too.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from meterseal.crypto import at_rest
from meterseal.errors import ConfigurationError

TOKEN_KEY_FILE = "auth-token.key"  # noqa: S105 - a file name
TOKEN_KEY_BYTES = 32


def ensure_token_key(directory: Path, passphrase: bytes | None) -> bool:
    """Make the token key in `directory` (which must exist) unless it has one; whether it made it.

    Only commands that set a deployment up call this (`keys init`, `init`, `cas init`, `keys
    shared`), never a server: replicas that each made their own key would refuse each other's
    tokens.
    """
    if not directory.is_dir():
        raise ConfigurationError(f"no deployment directory {directory} (meterseal keys init)")
    made = not (directory / TOKEN_KEY_FILE).exists()
    at_rest.ensure_secret_file(
        directory / TOKEN_KEY_FILE, lambda: secrets.token_bytes(TOKEN_KEY_BYTES), passphrase
    )
    return made


def token_key(directory: Path, passphrase: bytes | None) -> bytes:
    """The deployment's token key in `directory`; ConfigurationError naming the file if absent."""
    path = directory / TOKEN_KEY_FILE
    if not path.exists():
        raise ConfigurationError(
            f"no token key {path}: it signs the sign-in tokens, and every replica of the bills "
            "API and the CAS must hold the same one, so a server never makes it; make it once "
            f"with `meterseal keys shared -d {directory}` (`keys init` and `init` make it) and "
            "give every replica that file"
        )
    return at_rest.read_secret_file(path, passphrase, "token key")
