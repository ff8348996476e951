"""`meterseal keys shared`: the secrets several processes must hold the same copy of.

The stage link key and the token key: `keys shared` makes them in a deployment made before
`keys init` made them.
"""

from __future__ import annotations

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DeploymentDir,
    PassphraseEnv,
    console,
    passphrase,
)
from meterseal.errors import ConfigurationError


def shared(
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Make the secrets every replica must share (stage link key, token key) if missing."""
    from meterseal.deployment import MANIFEST, ensure_shared_secrets, keys_encrypted

    if not (deployment_dir / MANIFEST).exists():
        raise ConfigurationError(
            f"no deployment in {deployment_dir}; run `meterseal keys init {deployment_dir}`"
        )
    secret = passphrase(passphrase_env)
    if secret is None and keys_encrypted(deployment_dir):
        raise ConfigurationError(
            f"the deployment in {deployment_dir} keeps its keys encrypted: set {passphrase_env}"
        )
    for file, made in ensure_shared_secrets(deployment_dir, secret).items():
        console.print(
            f"{'created' if made else 'kept   '} {deployment_dir / file}", highlight=False
        )
