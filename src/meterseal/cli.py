"""The `meterseal` command line (Typer + Rich)."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from meterseal import cli_init, cli_keys, cli_meter_certs
from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX
from meterseal.cli_billdoc import billdoc_app
from meterseal.cli_billing import billing_app
from meterseal.cli_certs import certs_app
from meterseal.cli_common import (
    AUTO_OPEN_WORKERS,
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    SUITE_HELP,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
    from_config,
    server_tls,
    show_key_warnings,
)
from meterseal.cli_common import load as _load
from meterseal.cli_common import passphrase as _passphrase
from meterseal.cli_common import shown as _shown
from meterseal.cli_corrections import corrections_app
from meterseal.cli_extras import MissingExtra
from meterseal.config.cli import cli_defaults, config_app, root_callback
from meterseal.crypto.suites import DEFAULT_SUITE, suite_named
from meterseal.errors import ConfigurationError, MetersealError, exit_code_for
from meterseal.services.cli import (
    Admin,
    CasUrl,
    HttpTls,
    MqttPrefix,
    NatsUrl,
    Prefix,
    WorkerTls,
    service_app,
)
from meterseal.ui import progress_bar

app = typer.Typer(
    help="meterseal: sealed smart-meter readings from the meter to the bill.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Deployment keys: CA, head-end, billing, metrology authority.", no_args_is_help=True
)
meters_app = typer.Typer(help="Meter identities.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(certs_app, name="certs")
app.add_typer(meters_app, name="meters")
app.add_typer(billing_app)  # tariffs, bill, audit, export-bill, verify-bill
app.add_typer(corrections_app)  # rebill
app.add_typer(billdoc_app)  # bill-doc: a bill as HTML and PDF
app.add_typer(service_app, name="service")  # one service of services/trusted mode
app.add_typer(config_app, name="config")
app.callback()(root_callback)  # the global --config option
app.command("init")(cli_init.init)  # a new deployment: keys, CAS, policies, secrets, config
keys_app.command("stage")(cli_keys.stage)  # one stage's key files, for its Secret or host
keys_app.command("shared")(cli_keys.shared)  # stage link and token keys every replica shares
meters_app.command("certify")(cli_meter_certs.certify)  # meter keys made at the factory
meters_app.command("trust-manufacturer")(cli_meter_certs.trust_manufacturer)
meters_app.command("import-cert")(cli_meter_certs.import_cert)


def _add_group(name: str, module: str, attribute: str, summary: str) -> None:
    """Add a command group, or, when its install extra is missing, a stand-in naming it."""
    try:
        group = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        missing = MissingExtra.of(exc, name)
        if missing is None:
            raise
        loose = {"allow_extra_args": True, "ignore_unknown_options": True}

        @app.command(name, help=escape(f"{summary} (needs meterseal[{missing.extra}])"),
                     add_help_option=False, context_settings=loose)  # fmt: skip
        def stand_in() -> None:
            raise missing
    else:
        app.add_typer(group, name=name)


# The groups beyond the core import their extras' packages: each is added if they are installed.
_add_group("bills", "meterseal.cli_bills", "bills_app", "Bills over HTTP.")
_add_group("accounts", "meterseal.cli_accounts", "accounts_app", "Accounts of people and machines.")
_add_group("api-keys", "meterseal.cli_accounts", "api_keys_app", "API keys of machines.")
_add_group("mqtt", "meterseal.cli_mqtt", "mqtt_app", "Mosquitto configuration.")
_add_group("router", "meterseal.dissemination.cli_consent", "dissemination_app", "Dissemination.")
_add_group("integrity", "meterseal.integrity.cli", "integrity_app", "Meter software integrity.")
_add_group("cas", "meterseal.trust.cli", "cas_app", "Configuration and attestation service.")
_add_group("fraud", "meterseal.fraud.cli", "fraud_app", "Fraud detection.")
_add_group("bench", "meterseal.bench.cli", "bench_app", "Reproducible experiments.")
_add_group("import", "meterseal.exchange.cli", "import_app", "Import meter readings.")
_add_group("export", "meterseal.exchange.cli", "export_app", "Export readings and bills.")
_add_group("customers", "meterseal.exchange.cli_customers", "customers_app", "Customers' meters.")
_add_group("kvs", "meterseal.cli_kvs", "kvs_app", "Secure key-value store.")
_add_group("cascadb", "meterseal.cli_cascadb", "cascadb_app", "SQL over the secure KVS.")
_add_group("jobs", "meterseal.cli_jobs", "jobs_app", "Batch jobs with deadlines on Dask.")
_add_group("command", "meterseal.commands.cli", "command_app", "Signed commands to meters.")
_add_group("agent", "meterseal.agent.cli", "agent_app", "The meter-side sealing agent.")
# `kvs export`: customers' months of signed originals into the KVS (without the kvs extra,
# the group's stand-in names it)
with contextlib.suppress(ModuleNotFoundError):
    importlib.import_module("meterseal.cli_kvs").kvs_app.command("export")(
        importlib.import_module("meterseal.cli_kvs_export").export_command
    )


@keys_app.command("init")
def keys_init(
    directory: Path,
    name: Annotated[str, typer.Option(help="CA common name")] = "meterseal utility CA",
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Create a deployment: CA, head-end keys (every suite), billing and metrology keys (0600)."""
    from meterseal.deployment import init_deployment

    with console.status("generating keys (RSA-4096 takes a moment)"):
        deployment = init_deployment(
            directory,
            name=name,
            passphrase=_passphrase(passphrase_env),
            now=dt.datetime.now(dt.UTC),
        )
    console.print(f"deployment created in [bold]{deployment.directory}[/bold]")
    for kid_name, (kid, _) in deployment.headend.public().keys.items():
        console.print(f"  head-end key for suite {kid_name:8} kid {kid.hex()}")


@keys_app.command("encrypt")
def keys_encrypt(
    directories: Annotated[list[Path], typer.Argument(help="deployment, router or key dirs")],
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
    old_passphrase_env: Annotated[
        str | None, typer.Option(help="variable holding the current passphrase, to change it")
    ] = None,
) -> None:
    """Encrypt the key and secret files of existing directories under the passphrase."""
    from meterseal.crypto.rekey import rekey

    new = _passphrase(passphrase_env)
    if new is None:
        raise ConfigurationError(f"set {passphrase_env} to the passphrase to encrypt with")
    old = _passphrase(old_passphrase_env) if old_passphrase_env else new
    for path in rekey(directories, old, new):
        console.print(f"encrypted {path}")


@meters_app.command("provision")
def meters_provision(
    count: int,
    deployment_dir: Annotated[
        Path, typer.Option("--deployment", "-d", help="deployment directory")
    ] = Path("var/deployment"),
    suite: Annotated[str, typer.Option(help=SUITE_HELP)] = DEFAULT_SUITE.name,
    prefix: Annotated[str, typer.Option(help="meter id prefix")] = "MTR",
    regions: Annotated[int, typer.Option(help="number of regions to spread meters over")] = 8,
    out: Annotated[
        Path | None, typer.Option(help="fleet file (default DEPLOYMENT/fleet-SUITE.cbor)")
    ] = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Issue COUNT meter identities (key + CA-signed certificate) into a fleet file."""
    import time

    from meterseal.deployment import load_deployment
    from meterseal.meter.provisioning import provision, save_fleet

    secret = _passphrase(passphrase_env)
    deployment = load_deployment(deployment_dir, secret)
    try:
        chosen = suite_named(suite)
    except KeyError as exc:
        raise typer.BadParameter(str(exc), param_hint="--suite") from exc
    started = time.perf_counter()
    with progress_bar(console) as bar:
        task = bar.add_task(f"provisioning {chosen.name} meters", total=count)
        meters = provision(
            deployment.ca_key,
            deployment.ca_cert,
            count,
            chosen,
            now=dt.datetime.now(dt.UTC),
            prefix=prefix,
            regions=regions,
            progress=lambda n: bar.advance(task, n),
        )
    elapsed = time.perf_counter() - started
    path = out or deployment_dir / f"fleet-{chosen.name}.cbor"
    save_fleet(path, meters, secret)
    console.print(
        f"{count} meters ({chosen.name}) in {elapsed:.2f} s ({count / elapsed:,.0f}/s) -> {path}"
    )


@meters_app.command("register")
def meters_register(
    fleet: Path,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Admit a fleet file's meters (chain-checked certificates) into the head-end's store."""
    from meterseal.meter.provisioning import fleet_records, load_fleet
    from meterseal.storage import Store

    deployment = _load(deployment_dir, passphrase_env)
    meters = load_fleet(fleet, _passphrase(passphrase_env))
    records = fleet_records(deployment.ca_cert, meters)
    with Store.open(store) as db:
        count = db.register_meters(records, now=dt.datetime.now(dt.UTC))
    console.print(f"{count} meters registered in {_shown(store)}")


@meters_app.command("revoke")
def meters_revoke(meter_id: str, store: StoreUrl = DEFAULT_STORE) -> None:
    """Revoke a meter: the head-end refuses its packets from its next registry refresh."""
    from meterseal.storage import Store

    try:
        with Store.open(store) as db:
            db.revoke_meter(meter_id, dt.datetime.now(dt.UTC))
    except KeyError as exc:
        raise ConfigurationError(f"cannot revoke {meter_id}: no such meter") from exc
    console.print(f"meter {meter_id} revoked")


@app.command()
def serve(
    ctx: typer.Context,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    mode: Annotated[
        str, typer.Option(help="monolith (one process), services (over NATS) or trusted (+CAS)")
    ] = "monolith",
    tcp: Annotated[str, typer.Option(help="TCP listen address, or 'off'")] = "127.0.0.1:7400",
    http: Annotated[str, typer.Option(help="HTTP listen address, or 'off'")] = "off",
    mqtt: Annotated[
        str, typer.Option(help="MQTT broker URL (mqtt:// or mqtts://…) to subscribe at, or 'off'")
    ] = "off",
    mqtt_prefix: MqttPrefix = TOPIC_PREFIX,
    batch_size: Annotated[int, typer.Option(help="packets per trusted-stage batch")] = 512,
    open_workers: Annotated[
        int, typer.Option(help="monolith: processes opening packets (0: in the stage thread)")
    ] = AUTO_OPEN_WORKERS,
    workers: Annotated[int, typer.Option(help="services/trusted: processes per stage")] = 1,
    nats: NatsUrl = None,
    cas: CasUrl = None,
    prefix: Prefix = "",
    ack_wait: Annotated[
        float, typer.Option(help="services/trusted: seconds before JetStream redelivers")
    ] = 10.0,
    admin: Admin = "127.0.0.1:0",
    status_every: Annotated[float, typer.Option(help="seconds between status lines")] = 10.0,
    worker_tls: WorkerTls = False,
    http_tls: HttpTls = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Run the head-end (receivers + trusted stages + store) until Ctrl-C or SIGTERM."""
    from meterseal.acquisition.headend import HeadEndSettings
    from meterseal.runner import serve as run_serve
    from meterseal.services.catalog import MODES
    from meterseal.services.cli import options_from, serve_services

    if mode not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
    if mode != "trusted" and cas is not None and from_config(ctx, "cas"):
        cas = None  # the deployment's CAS (meterseal.toml) is for trusted mode only
    if mode != "monolith":
        if (mode == "trusted") != (cas is not None):
            raise typer.BadParameter("--cas URL goes with --mode trusted (and only with it)")
        if worker_tls and mode != "trusted":
            raise typer.BadParameter("--worker-tls goes with --mode trusted")
        options = options_from(
            deployment_dir,
            store,
            nats=nats,
            cas=cas,
            prefix=prefix,
            tcp=tcp,
            http=http,
            mqtt=mqtt,
            mqtt_prefix=mqtt_prefix,
            batch_size=batch_size,
            ack_wait=ack_wait,
            passphrase_env=passphrase_env,
            worker_tls=worker_tls,
            http_tls=http_tls,
        )
        serve_services(options, workers, None if admin == "off" else admin, status_every)
        return
    deployment = _load(deployment_dir, passphrase_env)
    settings = HeadEndSettings(
        tcp=None if tcp == "off" else tcp,
        http=None if http == "off" else http,
        mqtt=None if mqtt == "off" else mqtt,
        mqtt_prefix=mqtt_prefix,
        batch_size=batch_size,
        open_workers=open_workers,
        http_tls=server_tls(deployment_dir, http_tls, "off", passphrase_env),
    )
    run_serve(
        console,
        deployment,
        store,
        settings,
        status_every=status_every,
        admin=None if admin == "off" else admin,
    )


@app.command()
def simulate(
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    fleet: Annotated[
        Path | None, typer.Option(help="fleet file (default DEPLOYMENT/fleet-p256.cbor)")
    ] = None,
    transport: Annotated[str, typer.Option(help="tcp, http or mqtt")] = "tcp",
    target: Annotated[
        str, typer.Option(help="head-end address (host:port) or broker URL")
    ] = "127.0.0.1:7400",
    first_day: Annotated[
        str | None,
        typer.Option(
            "--from", help="first day of the period (UTC, YYYY-MM-DD; default: --days ago)"
        ),
    ] = None,
    days: Annotated[float, typer.Option(help="days of 15-minute readings per meter")] = 1.0,
    faults: Annotated[float, typer.Option(help="rate of each injected fault (0: honest)")] = 0.0,
    concurrency: Annotated[int, typer.Option(help="meters connected at once")] = 1000,
    window: Annotated[int, typer.Option(help="packets a meter sends before awaiting acks")] = 32,
    pace: Annotated[
        float, typer.Option(help="seconds a meter waits between windows (0: as fast as possible)")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="seed of the injected faults")] = 1,
    mqtt_prefix: MqttPrefix = TOPIC_PREFIX,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the head-end (or the store) to answer")
    ] = 10.0,
    store: Annotated[
        str | None, typer.Option(help="the head-end's store, read to report what it kept")
    ] = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Send a provisioned fleet's readings of a period to a running head-end; report the outcome."""
    from meterseal.meter.provisioning import load_fleet
    from meterseal.simulation import SimulationPlan, simulation_period
    from meterseal.simulation import simulate as run_simulate

    try:
        day = None if first_day is None else dt.date.fromisoformat(first_day)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from") from exc
    start, intervals = simulation_period(day, days, dt.datetime.now(dt.UTC))
    plan = SimulationPlan(
        transport,
        target,
        start,
        intervals,
        faults,
        concurrency,
        window,
        pace,
        seed,
        wait,
        store,
        mqtt_prefix,
    )
    deployment = _load(deployment_dir, passphrase_env)
    meters = load_fleet(fleet or deployment_dir / "fleet-p256.cbor", _passphrase(passphrase_env))
    run_simulate(console, deployment, meters, plan, _passphrase(passphrase_env))


@app.command()
def demo(
    meters: Annotated[int, typer.Option(help="meters in the fleet (mixed suites)")] = 120,
    days: Annotated[int, typer.Option(help="days of 15-minute readings per meter")] = 2,
    faults: Annotated[float, typer.Option(help="rate of each injected fault")] = 0.02,
    seed: Annotated[int, typer.Option(help="seed of the faults")] = 7,
    serve: Annotated[bool, typer.Option(help="then serve the portal (accounts printed)")] = False,
    listen: Annotated[str, typer.Option(help="--serve's host:port")] = "127.0.0.1:7480",
) -> None:
    """The whole journey in one process on SQLite: meters → TCP → trusted stages → store."""
    from meterseal.demo import run_demo
    from meterseal.demo_serve import serve_demo

    then = (lambda d, url: serve_demo(console, d, url, listen)) if serve else None
    run_demo(console, meters=meters, days=days, faults=faults, seed=seed, then=then)


@app.command()
def relay(
    listen: Annotated[
        str, typer.Option(help="address meters connect to, shared by the processes")
    ] = "127.0.0.1:7401",
    upstream: Annotated[
        str, typer.Option(help="the head-end's TCP receiver (serve --tcp)")
    ] = "127.0.0.1:7400",
    processes: Annotated[
        int, typer.Option(help="relay processes sharing the port (SO_REUSEPORT)")
    ] = 2,
    upstreams: Annotated[int, typer.Option(help="connections to the head-end per process")] = 4,
    idle_timeout: Annotated[
        float, typer.Option(help="seconds a silent meter connection is kept")
    ] = 120.0,
    max_per_source: Annotated[
        int, typer.Option(help="meter connections one source address may hold per process")
    ] = 1024,
    status_every: Annotated[float, typer.Option(help="seconds between status lines")] = 10.0,
) -> None:
    """Run a TCP relay (data concentrator, holds no key) in front of the head-end's receiver."""
    from meterseal.acquisition.relay import RelayConfig
    from meterseal.acquisition.relay_pool import RelayPool, serve_pool, status_line
    from meterseal.acquisition.tcp import TcpLimits
    from meterseal.runtime.address import format_address, parse_address

    listen_at, upstream_at = parse_address(listen, 7401), parse_address(upstream, 7400)
    limits = TcpLimits(idle_timeout=idle_timeout, max_per_source=max_per_source)
    config = RelayConfig(listen_at, upstream_at, upstreams, limits)
    pool = RelayPool(config, processes)
    port = pool.start()
    # Scripts wait for this line.
    print(f"listening relay {format_address(listen_at.host, port)}", flush=True)
    final = serve_pool(pool, status_every, lambda s: console.print(status_line(s)))
    console.print(status_line(final))


def main(args: Sequence[str] | None = None) -> None:
    """Run the command line; a MetersealError ends as its diagnostics on stderr and exit code 2.

    So does a package missing from the install: the message names the extra that brings it.
    """
    argv = list(sys.argv[1:] if args is None else args)
    show_key_warnings()
    try:
        app(args=argv, prog_name="meterseal", default_map=cli_defaults(app, argv))
    except ModuleNotFoundError as exc:
        command = next((a for a in argv if not a.startswith("-")), "")
        missing = MissingExtra.of(exc, command)
        if missing is None:
            raise
        _exit_with(missing)
    except MetersealError as exc:
        _exit_with(exc)


def _exit_with(error: MetersealError) -> None:
    raise SystemExit(exit_code_for(error)) from error
