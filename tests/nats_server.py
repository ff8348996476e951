"""A nats-server of a test's own, started with the configuration meterseal ships."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterseal.deployment import Deployment, issue_tls_identity, tls_identity_paths
from meterseal.services import nats_server
from tests.mosquitto import _die_with_parent, stop
from tests.services import REQUIRE_ENV, services_required

NATS_SERVER = os.environ.get(
    "MS_NATS_SERVER", shutil.which("nats-server") or "/usr/sbin/nats-server"
)
_LISTENING = re.compile(r"Listening for client connections on \S+:(\d+)")


@dataclass
class NatsServer:
    """A running server: its port, the deployment whose CA it trusts, and its log."""

    port: int
    deployment: Deployment
    log_file: Path

    def url(self, client: str | None = None, *, ca: Path | None = None) -> str:
        """A ``tls://`` URL trusting the deployment CA (or `ca`), with `client`'s certificate."""
        ca = ca or self.deployment.directory / "ca.cert.pem"
        query = f"ca={ca}"
        if client is not None:
            cert, key = tls_identity_paths(self.deployment.directory, client)
            query += f"&cert={cert}&key={key}"
        return f"tls://127.0.0.1:{self.port}?{query}"

    def log(self) -> str:
        """What the server logged so far."""
        return self.log_file.read_text(errors="replace")


def require_nats_server() -> None:
    """Skip (or fail under MS_REQUIRE_SERVICES=1) when the nats-server binary is absent."""
    if not os.access(NATS_SERVER, os.X_OK):
        message = f"nats-server binary not found at {NATS_SERVER} (set MS_NATS_SERVER)"
        if services_required():
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)


@contextlib.contextmanager
def running_nats(
    deployment: Deployment,
    clients: Sequence[str],
    *,
    now: dt.datetime,
    passphrase: bytes | None = None,
) -> Iterator[NatsServer]:
    """Issue `clients` certificates, start nats-server on a random port; stop it after."""
    require_nats_server()
    for name in clients:
        issue_tls_identity(deployment, name, [], passphrase=passphrase, now=now)
    with tempfile.TemporaryDirectory(prefix="ms-nats-") as tmp:
        log = Path(tmp) / "nats-server.log"
        plan = nats_server.ServerPlan(Path(tmp) / "server", tuple(clients), port=-1, log_file=log)
        conf = nats_server.write_server(
            plan, deployment.ca_key, deployment.ca_cert, ["127.0.0.1"], now=now, rng=os.urandom
        )
        with started(conf, log) as port:
            yield NatsServer(port, deployment, log)


@contextlib.contextmanager
def started(conf: Path, log: Path) -> Iterator[int]:
    """Run nats-server with `conf`, logging to `log`; its client port. Stopped after."""
    require_nats_server()
    process = subprocess.Popen(
        [NATS_SERVER, "-c", str(conf), "-l", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        yield _port(process, log)
    finally:
        stop(process)


def _port(process: subprocess.Popen[bytes], log: Path) -> int:
    # `port: -1` has the server pick a free port; it logs which once it listens.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        found = _LISTENING.search(log.read_text(errors="replace")) if log.exists() else None
        if found:
            return int(found.group(1))
        time.sleep(0.02)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise RuntimeError(f"nats-server did not start: {text[-2000:]}")
