"""`meterseal mqtt …`: a Mosquitto broker locked down for the deployment's meters and head-ends."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer

from meterseal.acquisition import mosquitto
from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX
from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
    load,
    passphrase,
)

mqtt_app = typer.Typer(
    help="MQTT: a Mosquitto broker with TLS, passwords and per-meter ACLs.", no_args_is_help=True
)
Prefix = Annotated[str, typer.Option(help="topic prefix the head-end and meters use")]


@mqtt_app.command("setup")
def mqtt_setup(
    broker_dir: Annotated[Path, typer.Argument(help="directory for the broker's files")],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    headend: Annotated[
        list[str] | None,
        typer.Option(help="a head-end instance, its MQTT user name plus a suffix (repeatable)"),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(help="name or address the broker is reached by (repeatable; 127.0.0.1)"),
    ] = None,
    bind: Annotated[str, typer.Option(help="address the broker listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TLS listener for passwords (meters)")] = 8883,
    cert_port: Annotated[
        int, typer.Option(help="TLS listener for client certificates (head-ends)")
    ] = 8884,
    prefix: Prefix = TOPIC_PREFIX,
    run_as: Annotated[str, typer.Option(help="user a broker started as root drops to")] = (
        "mosquitto"
    ),
    log_file: Annotated[
        Path | None, typer.Option(help="the broker's log file (default: syslog)")
    ] = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Write the broker's config, a server certificate, head-end client certificates and ACLs."""
    headends, hosts = headend or ["headend-1"], host or ["127.0.0.1"]
    deployment = load(deployment_dir, passphrase_env)
    key_passphrase = passphrase(passphrase_env)
    now = dt.datetime.now(dt.UTC)
    plan = mosquitto.BrokerPlan(broker_dir, bind, port, cert_port, prefix, run_as, log_file)
    ca_key, ca_cert = deployment.ca_key, deployment.ca_cert
    mosquitto.write_broker(plan, ca_key, ca_cert, hosts, now=now, rng=os.urandom)
    keys = deployment_dir / mosquitto.DEPLOYMENT_DIR
    for name in headends:
        mosquitto.write_client_certificate(
            keys, name, ca_key, ca_cert, passphrase=key_passphrase, now=now, rng=os.urandom
        )
    meters = _write_access(broker_dir, deployment_dir, store, prefix, key_passphrase)
    ca = deployment_dir / "ca.cert.pem"
    # Parseable lines: what to start, and the URLs the head-ends and meters connect with.
    print(f"broker mosquitto -c {(broker_dir / mosquitto.CONF).resolve()}")
    for name in headends:
        cert, key = keys / f"{name}.cert.pem", keys / f"{name}.key.pem"
        print(f"headend {name} mqtts://{hosts[0]}:{cert_port}?ca={ca}&cert={cert}&key={key}")
    print(f"meters {meters} mqtts://{hosts[0]}:{port}?ca={ca}")


@mqtt_app.command("acl")
def mqtt_acl(
    broker_dir: Annotated[Path, typer.Argument(help="the directory `mqtt setup` wrote")],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    prefix: Prefix = TOPIC_PREFIX,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Rewrite passwd and acl from the registered meters (after `meters register`/`revoke`)."""
    meters = _write_access(broker_dir, deployment_dir, store, prefix, passphrase(passphrase_env))
    console.print(f"{meters:,} meters may connect; reload the broker: kill -HUP <its pid>")


def _write_access(
    broker_dir: Path, deployment_dir: Path, store_url: str, prefix: str, secret: bytes | None
) -> int:
    from meterseal.storage import Store

    meter_secret = mosquitto.deployment_meter_secret(deployment_dir, secret, create=True)
    assert meter_secret is not None
    with Store.open_read_only(store_url) as db:
        meter_ids = [row.meter_id for row in db.meter_rows() if row.revoked_at is None]
    return mosquitto.write_access(
        broker_dir,
        meter_ids,
        meter_secret,
        headends=mosquitto.deployment_headends(deployment_dir),
        prefix=prefix,
    )
