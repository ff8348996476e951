"""A nats-server for meterseal's bus: JetStream, TLS only, clients by deployment-CA certificate.

`write_server` puts everything the server needs in one directory: ``nats-server.conf``, the
deployment CA, a server certificate it issued, and the JetStream store. The one listener
speaks TLS only and requires a client certificate that verifies against the deployment CA
(mutual TLS); ``verify_and_map`` then makes the certificate's subject the user, and only the
users listed (``CN=<name>`` of the services' certificates, `meterseal certs issue NAME`) may
connect: a meter's certificate, or a trusted worker's, is from the same CA but is no user.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meterseal.crypto import at_rest, certs
from meterseal.errors import ConfigurationError

CONF = "nats-server.conf"
CA = "ca.cert.pem"
SERVER_CERT = "server.cert.pem"
SERVER_KEY = "server.key.pem"
STORE = "jetstream"
DEFAULT_PORT = 4222
# Default per-message limit of nats-server; meterseal's bus messages are far smaller.
MAX_PAYLOAD = 1024 * 1024


@dataclass(frozen=True)
class ClusterPlan:
    """The cluster a server joins: its name, the route port, the other servers' routes."""

    name: str
    port: int  # the route listener (on the server's bind address)
    routes: tuple[str, ...]  # host:port of every other server's route listener
    password: str = field(default="", repr=False)  # the routes' shared secret (`route_password`)


ROUTE_USER = "route"


def route_password(ca_key: ec.EllipticCurvePrivateKey, cluster: str) -> str:
    """The routes' password of `cluster`: the same for every server the deployment CA writes.

    HMAC-SHA256 under the CA's private key, so only whoever holds it (the operator writing the
    servers' configurations) knows it, and no second secret has to be handed around.
    """
    secret = ca_key.private_numbers().private_value.to_bytes(66, "big")
    return hmac.new(
        secret, b"meterseal nats route\x00" + cluster.encode(), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class ServerPlan:
    """Where the server listens, who may connect, and where it keeps its files."""

    directory: Path
    clients: tuple[str, ...]  # the services' certificate names (their CN) that may connect
    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # -1: a random free port, which the server logs
    log_file: Path | None = None  # None: standard error
    server_name: str | None = None  # a cluster's servers need distinct names
    tags: tuple[str, ...] = ()  # placement tags (a KVS storage node: node:NAME)
    cluster: ClusterPlan | None = None  # None: a server of its own
    monitor: str | None = None  # host:port of the HTTP monitoring listener (None: none)


def client_user(name: str) -> str:
    """The NATS user a service certificate named `name` maps to (its subject, RFC 4514)."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]).rfc4514_string()


def server_conf(plan: ServerPlan) -> str:
    """``nats-server.conf`` for `plan` (paths absolute; strings quoted as JSON, which it reads)."""
    if not plan.clients:
        raise ConfigurationError("a NATS server for meterseal needs at least one client name")
    d = plan.directory.resolve()

    def q(value: object) -> str:
        return json.dumps(str(value))

    users = "\n".join(f"    {{user: {q(client_user(name))}}}" for name in plan.clients)
    log = [f"log_file: {q(plan.log_file.resolve())}"] if plan.log_file else []
    name = [f"server_name: {q(plan.server_name)}"] if plan.server_name else []
    tags = [f"server_tags: [{', '.join(q(tag) for tag in plan.tags)}]"] if plan.tags else []
    monitor = [f"http: {q(plan.monitor)}"] if plan.monitor else []
    return "\n".join(
        [
            "# nats-server for meterseal (written by meterseal; see docs/deployments.md).",
            *name,
            f"host: {q(plan.bind)}",
            f"port: {plan.port}",
            f"max_payload: {MAX_PAYLOAD}",
            *log,
            *tags,
            *monitor,
            "jetstream {",
            f"  store_dir: {q(d / STORE)}",
            "}",
            "# TLS only; a client certificate of the deployment CA is required and names the user.",
            "tls {",
            f"  cert_file: {q(d / SERVER_CERT)}",
            f"  key_file: {q(d / SERVER_KEY)}",
            f"  ca_file: {q(d / CA)}",
            "  verify_and_map: true",
            "  timeout: 2",
            "}",
            "authorization {",
            "  users = [",
            users,
            "  ]",
            "}",
            *_cluster_block(plan, d, q),
            "",
        ]
    )


def _cluster_block(plan: ServerPlan, d: Path, q: Callable[[object], str]) -> list[str]:
    """The routes to the other servers: TLS both ways, certificates of the deployment CA."""
    if plan.cluster is None:
        return []
    if not plan.server_name:
        raise ConfigurationError("a server in a cluster needs a name of its own")
    if not plan.cluster.password:
        raise ConfigurationError("a cluster's routes need their password (route_password)")
    who = f"{ROUTE_USER}:{plan.cluster.password}@"
    routes = ", ".join(q(f"nats-route://{who}{route}") for route in plan.cluster.routes)
    return [
        "# Routes to the cluster's other servers, each proving itself by its certificate.",
        "cluster {",
        f"  name: {q(plan.cluster.name)}",
        f"  host: {q(plan.bind)}",
        f"  port: {plan.cluster.port}",
        f"  authorization {{ user: {q(ROUTE_USER)}, password: {q(plan.cluster.password)} }}",
        f"  routes: [{routes}]",
        "  tls {",
        f"    cert_file: {q(d / SERVER_CERT)}",
        f"    key_file: {q(d / SERVER_KEY)}",
        f"    ca_file: {q(d / CA)}",
        "    verify: true",
        "    timeout: 2",
        "  }",
        "}",
    ]


def write_server(
    plan: ServerPlan,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    *,
    now: dt.datetime,
    rng: Callable[[int], bytes],
) -> Path:
    """Write the server's configuration, the CA and a server certificate for `hosts`; the config."""
    if not hosts:
        raise ConfigurationError("the NATS server needs a host name or address to be reached by")
    if plan.cluster is not None and not plan.cluster.password:
        joined = replace(plan.cluster, password=route_password(ca_key, plan.cluster.name))
        plan = replace(plan, cluster=joined)
    d = plan.directory
    at_rest.private_directory(d)
    at_rest.private_directory(d / STORE)
    key = ec.generate_private_key(ec.SECP256R1())
    if plan.cluster is None:
        cert = certs.issue_tls_certificate(
            ca_key, ca_cert, hosts[0], key.public_key(), hosts=hosts, now=now, rng=rng
        )
    else:  # a route is a TLS client of the other server too: client and server certificate
        name = plan.server_name or hosts[0]
        cert = certs.issue_service_certificate(
            ca_key, ca_cert, name, key.public_key(), hosts=hosts, now=now, rng=rng
        )
    # nats-server reads its key unencrypted: this one is the server's, not a deployment secret.
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    at_rest.write_private_file(d / SERVER_KEY, pem_key)
    at_rest.write_private_file(d / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))
    at_rest.write_private_file(d / CA, ca_cert.public_bytes(serialization.Encoding.PEM))
    at_rest.write_private_file(d / CONF, server_conf(plan).encode())
    return d / CONF


def deployment_clients(tls_directory: Path) -> list[str]:
    """The names of the services with a TLS certificate in the deployment (`certs issue`)."""
    return sorted(p.name.removesuffix(".cert.pem") for p in tls_directory.glob("*.cert.pem"))
