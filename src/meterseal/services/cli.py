"""`meterseal serve --mode …` and `meterseal service run NAME`: the three deployments."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX
from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    PassphraseEnv,
    console,
    passphrase,
    server_tls,
)

if TYPE_CHECKING:
    from meterseal.services.catalog import ServiceOptions

service_app = typer.Typer(
    help="One service of services/trusted mode (what `serve --mode services` starts).",
    no_args_is_help=True,
)


@service_app.callback()
def _group() -> None:
    """Keeps `run` a subcommand even when this app is the whole program (python -m)."""


Transport = Annotated[str, typer.Option(help="listen address, or 'off'")]
NatsUrl = Annotated[str | None, typer.Option("--nats", help="NATS URL (default MS_NATS_URL)")]
CasUrl = Annotated[
    str | None, typer.Option("--cas", help="CAS URL: trusted mode, secrets after attestation")
]
Prefix = Annotated[str, typer.Option(help="stream name prefix (isolates runs on one server)")]
MqttPrefix = Annotated[
    str, typer.Option(help="MQTT topic prefix: meters publish on PREFIX/readings/METER")
]
HttpTls = Annotated[
    str | None,
    typer.Option(
        help="serve the HTTP receiver over HTTPS with this certificate (DEPLOYMENT/tls/NAME)"
    ),
]
WorkerTls = Annotated[
    bool,
    typer.Option(
        help="trusted mode: fetch each stage's TLS key (tls/STAGE) from the CAS and serve "
        "its admin endpoint over HTTPS with it"
    ),
]
Admin = Annotated[str, typer.Option(help="admin endpoint (health, metrics) address, or 'off'")]
# The supervisor hands its services the store URL in this variable, not on their command line
# (world-readable in `ps`), since it may hold a password: services.supervisor.STORE_VARIABLE.
RunStore = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="MS_SERVICE_STORE",
        show_envvar=False,
        help="database URL (sqlite:///FILE or postgresql+psycopg://…)",
    ),
]
RunMqtt = Annotated[  # likewise the broker URL (services.supervisor.MQTT_VARIABLE)
    str,
    typer.Option(envvar="MS_SERVICE_MQTT", show_envvar=False, help="MQTT broker URL, or 'off'"),
]


def _off(value: str) -> str | None:
    return None if value == "off" else value


def options_from(
    deployment_dir: Path,
    store: str,
    *,
    nats: str | None,
    cas: str | None,
    prefix: str,
    tcp: str,
    http: str,
    mqtt: str,
    batch_size: int,
    mqtt_prefix: str = TOPIC_PREFIX,
    ack_wait: float,
    passphrase_env: str,
    worker_tls: bool = False,
    http_tls: str | None = None,
) -> ServiceOptions:
    """The ServiceOptions of a command line."""
    from meterseal.acquisition.headend import HeadEndSettings
    from meterseal.services.catalog import ServiceOptions
    from meterseal.services.intake import IntakeSettings

    return ServiceOptions(
        deployment_dir,
        store,
        nats_url=nats,
        prefix=prefix,
        receivers=HeadEndSettings(
            tcp=_off(tcp),
            http=_off(http),
            mqtt=_off(mqtt),
            mqtt_prefix=mqtt_prefix,
            http_tls=server_tls(deployment_dir, http_tls, "off", passphrase_env),
        ),
        intake=IntakeSettings(batch_size=batch_size),
        cas_url=cas,
        passphrase=passphrase(passphrase_env),
        passphrase_env=passphrase_env,
        ack_wait=ack_wait,
        worker_tls=worker_tls,
        http_tls=http_tls,
    )


@service_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="receiver, open-verify, anonymize-store or billing")],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: RunStore = DEFAULT_STORE,
    nats: NatsUrl = None,
    cas: CasUrl = None,
    prefix: Prefix = "",
    tcp: Transport = "127.0.0.1:7400",
    http: Transport = "off",
    mqtt: RunMqtt = "off",
    mqtt_prefix: MqttPrefix = TOPIC_PREFIX,
    batch_size: Annotated[int, typer.Option(help="packets per bus message")] = 256,
    ack_wait: Annotated[float, typer.Option(help="seconds before JetStream redelivers")] = 10.0,
    admin: Admin = "127.0.0.1:0",
    worker_tls: WorkerTls = False,
    http_tls: HttpTls = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Run one service until SIGTERM (prints `listening …` lines, then `ready NAME`)."""
    from meterseal.services.catalog import run_service

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
    raise typer.Exit(code=run_service(name, options, admin=_off(admin)))


@service_app.command("streams")
def streams(
    nats: NatsUrl = None,
    prefix: Prefix = "",
    every_prefix: Annotated[
        bool, typer.Option("--all", help="list the streams of every prefix on the server")
    ] = False,
    delete: Annotated[
        bool, typer.Option(help="delete this prefix's streams and what they hold")
    ] = False,
) -> None:
    """List a deployment's JetStream streams (name, messages), or delete them with --delete."""
    from meterseal.errors import ConfigurationError
    from meterseal.runtime.nats_endpoint import shown
    from meterseal.services.nats_bus import NatsBus, connect_nats, nats_url

    if delete and every_prefix:
        raise ConfigurationError("--delete removes one prefix's streams: name it with --prefix")
    url = nats or nats_url()

    async def main() -> list[str]:
        # Not NatsBus.connect: that would create the streams this command looks at.
        bus = NatsBus(await connect_nats(url), prefix=prefix)
        try:
            if delete:
                return [f"deleted {name}" for name in await bus.delete_streams()]
            listed = await bus.streams(every_prefix=every_prefix)
            return [f"{name}  {messages:,} messages" for name, messages in listed]
        finally:
            await bus.close()

    lines = asyncio.run(main())
    where = "any prefix" if every_prefix else f"prefix {prefix!r}"
    for line in lines or [f"no streams of {where} on {shown(url)}"]:
        console.print(line, highlight=False)


async def _attach_streams(options: ServiceOptions) -> None:
    from meterseal.services.catalog import connect_bus

    bus = await connect_bus(options)
    await bus.close()


def serve_services(
    options: ServiceOptions, workers: int, admin: str | None, status_every: float
) -> None:
    """Supervise the services (mode services or trusted) until Ctrl-C or SIGTERM."""
    from meterseal.runtime.lifecycle import run_main, serve_stage
    from meterseal.services.keys import ensure_stage_key
    from meterseal.services.supervisor import Supervisor, plan_processes

    mode = "trusted" if options.trusted else "services"
    if not options.trusted:  # made once here, so the workers do not race to create it
        ensure_stage_key(options.deployment, options.passphrase)
    # Streams made, or found to be this deployment's, before any child starts: a clash with
    # another deployment on the same NATS stops serve with one reason, not crash-looping children.
    asyncio.run(_attach_streams(options))
    supervisor = Supervisor(plan_processes(options, workers))
    console.print(f"meterseal serve --mode {mode}: {len(supervisor.children)} processes")

    async def main() -> None:
        await serve_stage(supervisor, admin=admin)

    code = run_main(main)
    console.print(f"stopped: {dict(supervisor.counts)}")
    if code:
        raise typer.Exit(code=code)
