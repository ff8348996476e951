"""`meterseal keys stage` and `keys shared`: each stage's own key files, and the shared secrets.

In services mode a stage reads only its own files of the deployment directory
(`services.keys.STAGE_FILES`); `keys stage` copies them into a directory of their own, what a
Kubernetes Secret, a container volume or a host running that stage alone is given. `keys
shared` makes the secrets several processes must hold the same copy of (stage link key,
token key) in a deployment made before `keys init` made them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DeploymentDir,
    PassphraseEnv,
    console,
    passphrase,
)
from meterseal.errors import ConfigurationError


def stage(
    name: Annotated[str, typer.Argument(help="open-verify, anonymize-store, billing or receiver")],
    out: Annotated[Path, typer.Option(help="directory to copy the stage's files into")],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Copy the files one stage reads (its keys, as they are at rest) into their own directory."""
    from meterseal.crypto.at_rest import private_directory, write_private_file
    from meterseal.services.keys import STAGE_FILES, missing_stage_files

    if name not in STAGE_FILES:
        raise typer.BadParameter(f"one of {', '.join(STAGE_FILES)}", param_hint="NAME")
    if out.resolve() == deployment_dir.resolve():
        raise ConfigurationError(f"--out {out} is the deployment directory: choose another")
    missing = missing_stage_files(deployment_dir, name)
    if missing:
        raise ConfigurationError(
            f"{', '.join(missing)} missing from {deployment_dir}: is it a deployment "
            "(`meterseal keys init`)?"
        )
    private_directory(out)
    for file in STAGE_FILES[name]:
        # Copied byte for byte: a key encrypted under the passphrase stays encrypted.
        write_private_file(out / file, (deployment_dir / file).read_bytes())
    files = STAGE_FILES[name]
    if not files:
        console.print(f"the {name} stage reads no key file: {out} stays empty", highlight=False)
        return
    console.print(f"{len(files)} files of {name} in {out}:", soft_wrap=True, highlight=False)
    for file in files:
        console.print(f"  {file}", highlight=False)
    console.print(
        f"next: meterseal service run {name} -d {out}  (or: kubectl create secret generic "
        f"meterseal-{name} --from-file={out}/)",
        soft_wrap=True,
        highlight=False,
    )


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
