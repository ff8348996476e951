"""`meterseal init DIR`: a new deployment, ready for `cas serve`, `serve --mode trusted`,
`kvs serve` and `cascadb serve`.

Keys, CAS state, the secrets and policies of every trusted stage (the three of
`serve --mode trusted`, the dissemination router and aggregator, the KVS gateway and CascaDB),
TLS when hosts are given, and DIR/meterseal.toml. Prints what it created and the commands to
run next.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from meterseal.cli_common import PassphraseEnv, console, passphrase
from meterseal.config import CONFIG_FILE, render_config
from meterseal.config.settings import in_schema, read_file
from meterseal.errors import ConfigurationError
from meterseal.ui import progress_bar

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from meterseal.bootstrap import InitReport
    from meterseal.kvs.service_trust import Provisioned
    from meterseal.runtime.address import Address
    from meterseal.trust.cas import Cas

ROUTER_DIRECTORY = "router"  # the router's key files (what `router init` makes)
CAS_PORT = 7490


def namespace(directory: Path) -> str:
    """A deployment name from a directory name: [a-z][a-z0-9_]* (shared-infrastructure prefix)."""
    name = re.sub(r"[^a-z0-9_]+", "_", directory.resolve().name.lower()).strip("_")
    name = name.lstrip("0123456789_")[:40]  # the configuration's limit for a name
    return name or "meterseal"


def deployment_name(directory: Path, token: str | None = None) -> str:
    """A new deployment's name: DIR's (`namespace`) plus a random suffix, unique on shared servers.

    Two operators who both run `init my-utility` must not share NATS streams, MQTT topics or a
    PostgreSQL schema. A deployment re-made with --force keeps the name in its file.
    """
    config = directory / CONFIG_FILE
    if config.is_file():
        kept = read_file(config).get("deployment.name")
        if kept:
            return str(kept)
    return f"{namespace(directory)[:35]}_{token or secrets.token_hex(2)}"


def _router_keys(
    directory: Path, secret: bytes | None, report: InitReport
) -> tuple[ed25519.Ed25519PrivateKey, bytes]:
    """The router's signing and operator keys: made as `router init` makes them, or kept."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from meterseal.crypto.at_rest import private_directory, read_secret_file, write_secret_file
    from meterseal.crypto.keys import read_private_key, write_private_key
    from meterseal.dissemination.cli_serve import (
        AUTHORITY_KEY,
        AUTHORITY_PUBLIC,
        OPERATOR_KEY,
        STATE_KEY,
    )

    keys = private_directory(directory / ROUTER_DIRECTORY)
    if (keys / AUTHORITY_KEY).exists():
        report.note(f"router keys {keys}", False)
        signing = read_private_key(keys / AUTHORITY_KEY, secret)
        if not isinstance(signing, ed25519.Ed25519PrivateKey):
            raise ConfigurationError(f"{keys / AUTHORITY_KEY} is not an Ed25519 key")
        return signing, read_secret_file(keys / OPERATOR_KEY, secret)
    key = ed25519.Ed25519PrivateKey.generate()
    operator = os.urandom(32)
    write_private_key(keys / AUTHORITY_KEY, key, secret)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    (keys / AUTHORITY_PUBLIC).write_text(public + "\n")
    write_secret_file(keys / OPERATOR_KEY, operator, secret)
    write_secret_file(keys / STATE_KEY, os.urandom(32), secret)
    report.note(f"router keys {keys} (members pin authority key {public[:16]}…)", True)
    return key, operator


def _dissemination(directory: Path, secret: bytes | None) -> Callable[[Cas, InitReport], None]:
    """Provisioning of the dissemination router and aggregator, run with init's CAS."""

    def provision(cas: Cas, report: InitReport) -> None:
        # What `router init` and `router provision` do, with the aggregation policy's defaults
        # and the router admitting this checkout's aggregator (re-run `router provision` to
        # change either).
        from meterseal.dissemination.aggregator import AggregationPolicy
        from meterseal.dissemination.provision import provision_dissemination
        from meterseal.dissemination.service import AGGREGATOR_SECRETS, ROUTER_SECRETS

        signing, operator = _router_keys(directory, secret, report)
        done = provision_dissemination(
            cas,
            signing_key=signing,
            operator_key=operator,
            policy=AggregationPolicy(),
            rng=os.urandom,
        )
        for name, version in done.versions.items():
            report.secrets.setdefault(name, (version, True))
        report.policies["dissemination-router"] = (done.router.hex, tuple(ROUTER_SECRETS))
        report.policies["dissemination-aggregator"] = (
            done.aggregator.hex,
            tuple(AGGREGATOR_SECRETS),
        )

    return provision


def _kvs_gateway(hosts: list[str]) -> Callable[[Cas, InitReport], None]:
    """The KVS gateway's master secret, TLS identity (with hosts) and rule, run with init's CAS."""
    from meterseal.kvs.service_trust import provision_gateway

    return _trusted_service("kvs-gateway", hosts, provision_gateway)


def _cascadb(hosts: list[str]) -> Callable[[Cas, InitReport], None]:
    """CascaDB's bucket key (`cascadb`), TLS identity for `hosts` and rule, with init's CAS."""
    from meterseal.cascadb.service_trust import provision_cascadb

    return _trusted_service(
        "cascadb", hosts, functools.partial(provision_cascadb, buckets=["cascadb"])
    )


def _trusted_service(
    policy: str, hosts: list[str], provision: Callable[..., Provisioned]
) -> Callable[[Cas, InitReport], None]:
    """A trusted service's `provision` (its secrets, a TLS identity for `hosts` from the
    deployment CA, its rule) run with init's CAS, and reported under `policy`."""

    def provisioned(cas: Cas, report: InitReport) -> None:
        from meterseal.services.trusted_setup import tls_issuer

        keys = report.deployment
        assert keys is not None  # bootstrap made or loaded it before the extras run
        done = provision(cas, os.urandom, issue_tls=tls_issuer(lambda: keys, hosts), hosts=hosts)
        for name, found in done.secrets.items():
            report.secrets.setdefault(name, found)
        report.policies[policy] = (done.measurement.hex, done.names)

    return provisioned


def _jobs_worker(cas: Cas, report: InitReport) -> None:
    """The batch jobs' workers: the authority's key and a rule for this code, in init's CAS.

    What `cas secrets import --name jobs/metrology-key` and `cas policy add --stage
    jobs-worker` do: meterseal.toml's cas.url makes every `jobs submit` attested.
    """
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from meterseal.jobs.attest import AUTHORITY_KEY, JOBS_STAGE
    from meterseal.trust.measurement import stage_measurement

    keys = report.deployment
    assert keys is not None  # bootstrap made or loaded it before the extras run
    # Plain in the CAS (sealed by its vault), as `cas secrets import` keeps an unwrapped file.
    pem = keys.metrology_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    latest = cas.state.latest_secret(AUTHORITY_KEY)
    if latest and cas.vault.open(AUTHORITY_KEY, latest.version, latest.sealed) == pem:
        report.secrets.setdefault(AUTHORITY_KEY, (latest.version, False))
    else:
        report.secrets.setdefault(AUTHORITY_KEY, (cas.put_secret(AUTHORITY_KEY, pem), True))
    measurement = stage_measurement(JOBS_STAGE)
    cas.allow(JOBS_STAGE, measurement, [AUTHORITY_KEY])
    report.policies[JOBS_STAGE] = (measurement.hex, (AUTHORITY_KEY,))


def init(
    directory: Annotated[Path, typer.Argument(help="the new deployment's directory")],
    init_store: Annotated[
        str | None,
        typer.Option(
            "--store", help="store URL (head-end and CAS; default: sqlite DIR/meterseal.db)"
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="deployment name: its NATS, MQTT and PostgreSQL namespace "
            "(default: DIR's name and a random suffix)"
        ),
    ] = None,
    ca_name: Annotated[str, typer.Option(help="CA common name")] = "meterseal utility CA",
    host: Annotated[
        list[str] | None,
        typer.Option(help="serve the CAS and the trusted workers over TLS for this host (repeat)"),
    ] = None,
    cas_listen: Annotated[
        str, typer.Option(help="host:port the CAS will listen on (written in the config)")
    ] = f"127.0.0.1:{CAS_PORT}",
    init_nats: Annotated[
        str | None, typer.Option("--nats", help="NATS URL of the services (into the config)")
    ] = None,
    dissemination: Annotated[
        bool, typer.Option(help="also the dissemination router's and aggregator's keys and rules")
    ] = True,
    force: Annotated[
        bool, typer.Option(help="complete a non-empty DIR: keep what exists, add what is missing")
    ] = False,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Create a deployment: keys, CAS state, every trusted stage's policy and secrets, a config."""
    from meterseal.bootstrap import InitOptions, bootstrap, check_directory, check_store
    from meterseal.runtime.address import (
        format_address,
        hide_password,
        parse_address,
        without_password,
    )

    check_directory(directory, force)  # before anything is written
    directory = directory.absolute()
    chosen = name or deployment_name(directory)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", chosen):  # checked before a file is written
        raise typer.BadParameter(
            "1-40 of a-z, 0-9 and _, starting with a letter", param_hint="--name"
        )
    listen = parse_address(cas_listen, CAS_PORT)
    scheme = "https" if host else "http"
    cas_url = f"{scheme}://{format_address(host[0] if host else listen.host, listen.port)}"
    # In the schema every later command reads it from (store.schema defaults to the name).
    store = (
        in_schema(init_store, chosen) if init_store else f"sqlite:///{directory / 'meterseal.db'}"
    )
    # The file holds no password: later commands give it to libpq as PGPASSWORD or ~/.pgpass.
    file_store = None if init_store is None else without_password(init_store)
    values: dict[str, dict[str, object]] = {
        "deployment": {"name": chosen, "dir": ".", "passphrase_env": passphrase_env},
        # Relative to the file: the directory can move with its store.
        "store": {"url": file_store or "sqlite:///meterseal.db"},
        # `cas serve` listens where the URL every other command reads points.
        "cas": {"url": cas_url, "listen": format_address(listen.host, listen.port)},
    }
    if host:  # the KVS gateway serves HTTPS with its CAS-released key for the first host
        values["kvs"] = {"url": f"https://{format_address(host[0], 7470)}"}
    if init_nats:
        if "@" in urlsplit(init_nats).netloc:  # user:password@ or token@
            raise typer.BadParameter(
                f"credentials are never written into {CONFIG_FILE}: give the services the URL "
                "in MS_NATS_URL instead (or use certificates: tls://…)",
                param_hint="--nats",
            )
        values["nats"] = {"url": init_nats}
    rendered = render_config(values)  # checked before anything is made: no half-made deployment
    if init_store and not force:  # the default, DIR/meterseal.db, is new
        check_store(store, hide_password(init_store))
    secret = passphrase(passphrase_env)
    options = InitOptions(ca_name, secret, tuple(host or ()), force)
    extra = [("dissemination", _dissemination(directory, secret))] if dissemination else []
    extra.append(("KVS gateway", _kvs_gateway(host or [])))
    # CascaDB serves only TLS: without --host, for this machine (its listeners' default).
    extra.append(("CascaDB", _cascadb(host or ["localhost", "127.0.0.1"])))
    extra.append(("batch jobs", _jobs_worker))
    steps = 4 + len(extra)
    with progress_bar(console) as bar:
        task = bar.add_task("meterseal init", total=steps)

        def step(what: str) -> None:
            bar.update(task, description=what)
            bar.advance(task)

        report = bootstrap(
            directory,
            store,
            options,
            now=dt.datetime.now(dt.UTC),
            step=step,
            extra=extra,
        )
    config = directory / CONFIG_FILE
    if config.exists():  # --force: the operator's file stays as it is
        report.note(str(config), False)
    else:
        config.write_text(rendered)
        report.note(str(config), True)
    console.print(
        f"deployment name {chosen}: NATS streams {chosen.upper()}_…, MQTT topics "
        f"meterseal/v1/{chosen}/…" + (f", PostgreSQL schema {chosen}" if init_store else ""),
        soft_wrap=True,
        highlight=False,
    )
    _print(report, directory, listen, host or [])
    if file_store != init_store:
        console.print(
            f"the store's password is not in {CONFIG_FILE}: give it to every command as "
            "PGPASSWORD (or in ~/.pgpass), which libpq reads",
            soft_wrap=True,
            highlight=False,
        )


def _print(report: InitReport, directory: Path, listen: Address, hosts: list[str]) -> None:
    console.print(f"deployment in {directory}")
    for what in report.created:
        console.print(f"  created {what}", soft_wrap=True, highlight=False)
    for what in report.kept:
        console.print(f"  kept    {what}", soft_wrap=True, highlight=False)
    for secret_name, (version, new) in sorted(report.secrets.items()):
        console.print(f"  secret  {secret_name} v{version}{'' if new else ' (kept)'}")
    for stage, (measurement, names) in report.policies.items():
        console.print(
            f"  policy  {stage} {measurement} may receive {', '.join(names)}",
            soft_wrap=True,
            highlight=False,
        )
    tls = " --tls cas" if hosts else ""
    worker_tls = " --worker-tls" if hosts else ""
    console.print(
        f"next, in {directory} (its {CONFIG_FILE} sets the deployment, store, CAS and NATS "
        f"prefix; from elsewhere: meterseal --config {directory / CONFIG_FILE} …):",
        soft_wrap=True,
        highlight=False,
    )
    for line in (
        f"meterseal cas serve --listen {listen}{tls}",
        "meterseal meters provision 100",
        "meterseal meters register fleet-p256.cbor",
        f"meterseal serve --mode trusted{worker_tls}",
        "meterseal simulate --days 1",
        f"meterseal kvs serve{' --tls' if hosts else ''}",
        "meterseal cascadb serve",
    ):
        console.print(f"  {line}", soft_wrap=True, highlight=False)
