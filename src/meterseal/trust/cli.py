"""`meterseal cas …`: the configuration and attestation service and its administration.

    cas init        master key, simulated platform attestation key, platform sealing secret
    cas serve       the CAS HTTP API (prints `listening cas http://HOST:PORT`)
    cas measure     a stage's measurement, as a worker computes it
    cas fetch       act as a trusted worker: measure, attest, fetch (prints versions only)
    cas policy      add | list | revoke (a measurement)
    cas secrets     import | list | rotate | revoke
    cas log         the CAS log, re-derived and checked

Administration works on the store directly (the API has no administrator login yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    ClientCerts,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    TlsName,
    console,
    passphrase,
    server_tls,
)
from meterseal.errors import ConfigurationError, KeyFileError
from meterseal.services.cli import Admin

if TYPE_CHECKING:
    import ssl

    from fastapi import FastAPI

    from meterseal.accounts.authn import AccountAuthenticator
    from meterseal.runtime.readiness import Readiness
    from meterseal.trust.attestation import Attester, QuoteVerifier
    from meterseal.trust.cas import Cas

cas_app = typer.Typer(
    help="Configuration and attestation service: secrets released to attested trusted stages.",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="Which measurement may receive which secret.", no_args_is_help=True)
secrets_app = typer.Typer(help="The deployment's secrets in the CAS.", no_args_is_help=True)
cas_app.add_typer(policy_app, name="policy")
cas_app.add_typer(secrets_app, name="secrets")

BACKENDS = ("simulated", "configfs-tsm")
Stage = Annotated[str, typer.Option(help="trusted stage: open-verify, anonymize-store, billing")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="the stage's configuration (JSON object)")
]
Backend = Annotated[str, typer.Option(help=f"attestation backend: {', '.join(BACKENDS)}")]
Secret = Annotated[list[str], typer.Option("--secret", help="secret name (repeat for more)")]
SIMULATED_NOTE = "attestation backend: simulated: no hardware guarantee"


def _config(path: Path | None) -> dict[str, object]:
    if path is None:
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the configuration {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"{path} must hold a JSON object")
    return value


def _verifiers(backends: list[str], directory: Path) -> list[QuoteVerifier]:
    from meterseal.trust.attestation import ConfigfsTsmVerifier, SimulatedVerifier

    out: list[QuoteVerifier] = []
    for backend in backends:
        if backend == "simulated":
            out.append(SimulatedVerifier.from_deployment(directory))
        elif backend == "configfs-tsm":
            out.append(ConfigfsTsmVerifier())
        else:
            raise ConfigurationError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
    return out


@contextlib.contextmanager
def _cas(
    store_url: str,
    directory: Path,
    passphrase_env: str,
    verifiers: list[QuoteVerifier] | None = None,
    nonce_ttl: float | None = None,
) -> Iterator[Cas]:
    """A CAS core over the store (migrated) and the master key of `directory`."""
    from meterseal.storage import Store
    from meterseal.trust.cas import NONCE_TTL, Cas
    from meterseal.trust.cas_store import CasStore
    from meterseal.trust.vault import Vault

    vault = Vault.from_deployment(directory, passphrase(passphrase_env))
    with Store.open(store_url) as store:
        yield Cas(CasStore(store), vault, verifiers or [], nonce_ttl=nonce_ttl or NONCE_TTL)


@cas_app.command("init")
def cas_init(
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Create the CAS master key and the simulated platform's keys (existing files are kept)."""
    from meterseal.accounts.token_key import TOKEN_KEY_FILE, ensure_token_key
    from meterseal.deployment import keys_encrypted
    from meterseal.trust.vault import init_cas_files

    secret = passphrase(passphrase_env)
    if secret is None and keys_encrypted(deployment_dir):
        # Plain CAS keys beside encrypted deployment keys would undo the passphrase.
        raise KeyFileError(
            f"the deployment in {deployment_dir} keeps its keys encrypted: set {passphrase_env} "
            "so that the CAS's keys are encrypted too"
        )
    created = init_cas_files(deployment_dir, secret)
    # The key of its sign-in tokens, which every CAS replica must share: made here, not at start.
    created[TOKEN_KEY_FILE] = ensure_token_key(deployment_dir, secret)
    for name, new in created.items():
        console.print(f"{'created' if new else 'kept   '} {deployment_dir / name}")
    console.print(f"platform keys are for the {SIMULATED_NOTE}")


@cas_app.command("serve")
def cas_serve(
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    listen: Annotated[str, typer.Option(help="HTTP listen address host:port")] = "127.0.0.1:7490",
    backend: Annotated[
        list[str], typer.Option(help=f"accepted quote backends: {', '.join(BACKENDS)}")
    ] = ["simulated"],  # noqa: B006
    nonce_ttl: Annotated[float, typer.Option(help="seconds a nonce stays fresh")] = 60.0,
    tls: TlsName = None,
    client_certs: ClientCerts = "optional",
    admin: Admin = "127.0.0.1:0",
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Serve the CAS API until Ctrl-C or SIGTERM."""
    from meterseal.runtime.address import parse_address
    from meterseal.trust.api import create_cas_app

    try:
        address = str(parse_address(listen, 7490))  # refused before the store is opened
        verifiers = _verifiers(backend, deployment_dir)
        context = server_tls(deployment_dir, tls, client_certs, passphrase_env)
        with (
            _cas(store, deployment_dir, passphrase_env, verifiers, nonce_ttl) as cas,
            _people(store, deployment_dir, passphrase_env) as people,
        ):
            app = create_cas_app(cas, people)
            readiness = _store_readiness(cas)
            asyncio.run(_serve(app, address, backend, context, readiness, admin))
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {listen}: {exc}") from exc


@contextlib.contextmanager
def _people(store_url: str, directory: Path, passphrase_env: str) -> Iterator[AccountAuthenticator]:
    """Who may sign in to the CAS's read routes: the accounts of the CAS's store."""
    from meterseal.accounts.authn import AccountAuthenticator
    from meterseal.accounts.credentials import TokenSigner, token_key
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    signer = TokenSigner(token_key(directory, passphrase(passphrase_env)))
    with Store.open(store_url) as store:
        yield AccountAuthenticator(AccountStore(store), signer)


def _store_readiness(cas: Cas) -> Readiness:
    """/readyz of the CAS: its store must answer."""
    from meterseal.runtime.readiness import Readiness
    from meterseal.trust.cas_store import CasStore

    return Readiness(cas.state.store.not_ready) if isinstance(cas.state, CasStore) else Readiness()


async def _serve(
    app: FastAPI,
    listen: str,
    backends: list[str],
    tls: ssl.SSLContext | None,
    readiness: Readiness,
    admin: str = "127.0.0.1:0",
) -> None:
    from meterseal.runtime.http import HttpAppService
    from meterseal.runtime.lifecycle import serve_stage

    if "simulated" in backends:  # on stderr: stdout carries the parseable lines only
        Console(stderr=True).print(f"CAS: {SIMULATED_NOTE}")
    # `serve_stage` prints `listening cas URL` (scripts wait for it), then `ready cas`.
    service = HttpAppService("cas", app, listen, 7490, tls, readiness)
    await serve_stage(service, admin=None if admin == "off" else admin)


@cas_app.command("measure")
def cas_measure(
    stage: Stage,
    config: ConfigFile = None,
    components: Annotated[bool, typer.Option(help="list what went into it")] = False,
) -> None:
    """Print a stage's measurement, computed as its worker computes it."""
    from meterseal.trust.measurement import stage_measurement

    measurement = stage_measurement(stage, _config(config))
    print(measurement.hex)
    if components:
        table = Table("kind", "name", "value")
        for c in measurement.components:
            table.add_row(c.kind, c.name, c.value[:16])
        console.print(table)


def _attester(backend: str, directory: Path, secret: bytes | None) -> Attester:
    from meterseal.trust.attestation import ConfigfsTsmAttester, SimulatedAttester

    if backend == "simulated":
        return SimulatedAttester.from_deployment(directory, secret)
    if backend == "configfs-tsm":
        return ConfigfsTsmAttester()
    raise ConfigurationError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")


@cas_app.command("fetch")
def cas_fetch(
    cas_url: Annotated[str, typer.Option("--cas", help="the CAS's URL")],
    stage: Stage,
    secret: Secret,
    config: ConfigFile = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    backend: Backend = "simulated",
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Act as a trusted worker: measure, attest, fetch; print versions, never values."""
    from meterseal.trust.worker import start_trusted

    worker = start_trusted(
        stage,
        cas_url,
        deployment_dir,
        names=secret,
        config=_config(config),
        attester=_attester(backend, deployment_dir, passphrase(passphrase_env)),
    )
    console.print(f"measurement {worker.measurement.hex} ({worker.assurance})")
    for name, value in worker.secrets.items():
        digest = hashlib.sha256(value).hexdigest()[:12]
        print(f"released {name} v{worker.versions[name]} ({len(value)} bytes, sha256 {digest}…)")


@policy_app.command("add")
def policy_add(
    stage: Stage,
    secret: Secret,
    measurement: Annotated[
        str | None, typer.Option(help="64 hex digits (default: this checkout's measurement)")
    ] = None,
    config: ConfigFile = None,
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Let a measurement (running STAGE) receive the named secrets."""
    from meterseal.trust.measurement import Measurement, stage_measurement

    chosen = (
        Measurement.from_hex(measurement)
        if measurement
        else stage_measurement(stage, _config(config))
    )
    with _cas(store, deployment_dir, passphrase_env) as cas:
        ids = cas.allow(stage, chosen, secret)
    console.print(
        f"allowed {chosen.hex} ({stage}) to receive {', '.join(secret)} (rules {ids})",
        soft_wrap=True,
    )


@policy_app.command("list")
def policy_list(
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """The allow rules and the revoked measurements."""
    with _cas(store, deployment_dir, passphrase_env) as cas:
        rules, revoked = cas.state.rules(), cas.state.revocations()
    gone = {r.measurement for r in revoked}
    table = Table("id", "stage", "measurement", "secret", "added", "state")
    for r in rules:
        state = "revoked" if r.measurement in gone else "allowed"
        table.add_row(
            str(r.id),
            r.stage,
            r.measurement.hex()[:16] + "…",
            r.secret,
            f"{r.added_at:%F %T}",
            state,
        )
    console.print(table)
    for gone_one in revoked:
        console.print(
            f"revoked {gone_one.measurement.hex()} at {gone_one.revoked_at:%F %T}: "
            f"{gone_one.reason}"
        )


@policy_app.command("revoke")
def policy_revoke(
    measurement: str,
    reason: Annotated[str, typer.Option(help="why (kept in the log)")] = "",
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Revoke a measurement: refused from its next request; rotate what it received."""
    from meterseal.trust.measurement import Measurement

    chosen = Measurement.from_hex(measurement)
    with _cas(store, deployment_dir, passphrase_env) as cas:
        outcome = cas.revoke(chosen, reason)
    console.print(f"{'revoked' if outcome.new else 'already revoked'}: {chosen.hex}")
    for name, version in outcome.received:
        console.print(
            f"  it received {name} v{version}: rotate it (`meterseal cas secrets rotate {name}`)"
            " so that its copy goes stale"
        )


@secrets_app.command("import")
def secrets_import(
    name: Annotated[str | None, typer.Option(help="import one secret under this name")] = None,
    file: Annotated[Path | None, typer.Option(help="the secret's bytes (with --name)")] = None,
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Import every secret the trusted stages need (or one file as --name); unchanged: kept.

    A key file as meterseal stores it (e.g. `stage-link.key`) is unwrapped first, with the
    passphrase if it is encrypted; a value that is not what its name must hold is refused.
    """
    from meterseal.services.trusted_setup import checked_secret, secret_file, trusted_secrets

    if (name is None) != (file is None):
        raise typer.BadParameter("--name and --file go together")
    secret = passphrase(passphrase_env)
    values = (
        {name: checked_secret(name, secret_file(file, secret), str(file))}
        if name and file
        else trusted_secrets(deployment_dir, secret)
    )
    with _cas(store, deployment_dir, passphrase_env) as cas:
        for secret_name, value in values.items():
            latest = cas.state.latest_secret(secret_name)
            if latest and cas.vault.open(secret_name, latest.version, latest.sealed) == value:
                console.print(f"{secret_name}: unchanged (v{latest.version})")
                continue
            console.print(f"{secret_name}: v{cas.put_secret(secret_name, value)}")


@secrets_app.command("issue-tls")
def secrets_issue_tls(
    stage: Stage,
    host: Annotated[list[str], typer.Option(help="host name or IP address it serves at (repeat)")],
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Issue STAGE a TLS key and certificate into the CAS only (secret tls/STAGE)."""
    from meterseal.cli_common import load
    from meterseal.services.trusted_setup import issue_worker_tls
    from meterseal.trust.worker import tls_secret

    deployment = load(deployment_dir, passphrase_env)
    with _cas(store, deployment_dir, passphrase_env) as cas:
        version = issue_worker_tls(cas, deployment.ca_key, deployment.ca_cert, stage, host)
    name = tls_secret(stage)
    console.print(
        f"{name}: v{version}; allow it with `cas policy add --stage {stage} --secret {name}`"
    )


@secrets_app.command("list")
def secrets_list(
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Secrets' names and versions (never values)."""
    with _cas(store, deployment_dir, passphrase_env) as cas:
        infos = cas.state.secret_infos()
        withdrawn = {i.name: cas.revoked_through(i.name) for i in infos}
    table = Table("secret", "latest", "versions", "updated", "state")
    for i in infos:
        gone = withdrawn[i.name] >= i.latest_version
        state = f"revoked through v{withdrawn[i.name]}" if gone else "released"
        table.add_row(
            i.name, f"v{i.latest_version}", str(i.versions), f"{i.updated_at:%F %T}", state
        )
    console.print(table)


@secrets_app.command("rotate")
def secrets_rotate(
    name: str,
    file: Annotated[Path | None, typer.Option(help="the new value")] = None,
    random: Annotated[int, typer.Option(help="or: this many fresh random bytes")] = 0,
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Store a new version of a secret; workers get it at their next fetch."""
    from meterseal.services.trusted_setup import checked_secret, secret_file

    if (file is None) == (random <= 0):
        raise typer.BadParameter("give exactly one of --file and --random N")
    value = secret_file(file, passphrase(passphrase_env)) if file else os.urandom(random)
    checked_secret(name, value, str(file) if file else f"--random {random}")
    with _cas(store, deployment_dir, passphrase_env) as cas:
        if cas.state.latest_secret(name) is None:
            raise ConfigurationError(f"no secret {name!r} to rotate; import it first")
        version = cas.put_secret(name, value)
    console.print(f"{name}: rotated to v{version}")


@secrets_app.command("revoke")
def secrets_revoke(
    name: str,
    reason: Annotated[str, typer.Option(help="why (kept in the log)")] = "",
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Revoke a secret: no version so far is released to anyone until it is rotated."""
    with _cas(store, deployment_dir, passphrase_env) as cas:
        if cas.state.latest_secret(name) is None:
            raise ConfigurationError(f"no secret {name!r} to revoke")
        done = cas.revoke_secret(name, reason)
    said = "revoked" if done.new else "already revoked"
    console.print(
        f"{name}: {said} through v{done.version}; release it again with "
        f"`meterseal cas secrets rotate {name}`",
        soft_wrap=True,
    )


@cas_app.command("log")
def cas_log(
    limit: Annotated[int, typer.Option(help="show the newest N entries")] = 50,
    store: StoreUrl = DEFAULT_STORE,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """The CAS log (every release, refusal and change); exits 1 if it does not verify."""
    from meterseal.trust.cas import check_log, decode_entry

    with _cas(store, deployment_dir, passphrase_env) as cas:
        rows = cas.state.log_rows()
        problems = check_log(rows, cas.vault)
    table = Table("#", "time", "event", "outcome", "stage", "measurement", "secrets", "reason")
    for row in rows[-limit:]:
        e = decode_entry(row.entry)
        table.add_row(
            str(e["seq"]),
            f"{dt.datetime.fromtimestamp(e['at'], dt.UTC):%F %T}",
            e["event"],
            e["outcome"],
            e["stage"],
            (e["measurement"] or "")[:12],
            ", ".join(f"{n} v{v}" if v else n for n, v in e["secrets"]),
            e["reason"] or e.get("assurance", ""),
        )
    console.print(table)
    head = rows[-1].root.hex() if rows else "(empty)"
    if problems:
        for problem in problems:
            console.print(f"[red]log problem:[/red] {problem}")
        raise typer.Exit(code=1)
    console.print(f"{len(rows)} entries, root {head}: verified (MACs under the master key)")
