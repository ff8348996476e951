"""A Mosquitto broker of a test's own, started with the configuration meterseal ships."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.acquisition import mosquitto
from meterseal.acquisition.mqtt_endpoint import MqttEndpoint
from tests.services import REQUIRE_ENV, services_required

MOSQUITTO = os.environ.get("MS_MOSQUITTO", shutil.which("mosquitto") or "/usr/sbin/mosquitto")
_ATTEMPTS = 10


@dataclass
class Broker:
    """A running broker: its directory, ports and the MQTT secret its meters' passwords use."""

    plan: mosquitto.BrokerPlan
    secret: bytes
    ca_file: Path
    process: subprocess.Popen[bytes]

    def meter_endpoint(self, meter_id: str) -> MqttEndpoint:
        """How meter `meter_id` connects: TLS on the password listener, as itself."""
        return MqttEndpoint(
            "127.0.0.1",
            self.plan.password_port,
            True,
            meter_id,
            mosquitto.meter_password(self.secret, meter_id),
            self.ca_file,
        )

    def url(self, *, certificate: bool = False, query: str = "") -> str:
        """An ``mqtts://`` URL of the password (or certificate) listener, with `query` options."""
        port = self.plan.certificate_port if certificate else self.plan.password_port
        options = f"ca={self.ca_file}" + (f"&{query}" if query else "")
        return f"mqtts://127.0.0.1:{port}?{options}"

    def reload(self) -> None:
        """Have the broker read ``passwd`` and ``acl`` again (SIGHUP), and wait until it did."""
        before = self.log().count("Reloading config")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log().count("Reloading config") == before and time.monotonic() < deadline:
            time.sleep(0.02)

    def log(self) -> str:
        """What the broker logged so far."""
        assert self.plan.log_file is not None
        return self.plan.log_file.read_text(errors="replace")


def require_mosquitto() -> None:
    """Skip (or fail under MS_REQUIRE_SERVICES=1) when the mosquitto binary is absent."""
    if not os.access(MOSQUITTO, os.X_OK):
        message = f"mosquitto binary not found at {MOSQUITTO} (set MS_MOSQUITTO)"
        if services_required():
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)


@contextlib.contextmanager
def running_broker(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    meter_ids: Sequence[str],
    *,
    prefix: str,
    headends: Sequence[str] = (),
    headend_passwords: dict[str, str] | None = None,
    now: dt.datetime,
) -> Iterator[Broker]:
    """Start mosquitto on two free ports in a fresh directory; stop it and clean up after."""
    require_mosquitto()
    with tempfile.TemporaryDirectory(prefix="ms-mosquitto-") as tmp:
        directory = Path(tmp)
        secret = os.urandom(32)
        mosquitto.write_access(
            directory,
            meter_ids,
            secret,
            headends=headends,
            headend_passwords=headend_passwords,
            prefix=prefix,
        )
        broker = _start(directory, ca_key, ca_cert, secret, prefix, now)
        try:
            yield broker
        finally:
            stop(broker.process)


def _start(
    directory: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    secret: bytes,
    prefix: str,
    now: dt.datetime,
) -> Broker:
    log = directory / "mosquitto.log"
    plans: list[mosquitto.BrokerPlan] = []

    def configure(password_port: int, certificate_port: int) -> Path:
        plans.append(
            mosquitto.BrokerPlan(
                directory,
                password_port=password_port,
                certificate_port=certificate_port,
                prefix=prefix,
                run_as=getpass.getuser(),
                log_file=log,
            )
        )
        mosquitto.write_broker(plans[-1], ca_key, ca_cert, ["127.0.0.1"], now=now, rng=os.urandom)
        return directory / mosquitto.CONF

    process = launch(configure, log)
    return Broker(plans[-1], secret, directory / mosquitto.CA, process)


def launch(configure: Callable[[int, int], Path], log: Path) -> subprocess.Popen[bytes]:
    """Start mosquitto with the config `configure(port, cert_port)` writes (logging to `log`)."""
    # Mosquitto cannot bind port 0: take ports the kernel just handed out, and try again
    # with others when someone took them meanwhile.
    require_mosquitto()
    for _ in range(_ATTEMPTS):
        conf = configure(_free_port(), _free_port())
        log.write_text("")
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        if _running(process, log):
            return process
        process.kill()
        process.wait()
        if "in use" not in log.read_text(errors="replace"):
            raise RuntimeError(f"mosquitto did not start: {log.read_text(errors='replace')}")
    raise RuntimeError(f"no free port pair for mosquitto in {_ATTEMPTS} attempts")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a broker `launch` started."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> None:
    # A test run killed outright must not leave its brokers behind (Linux: PR_SET_PDEATHSIG).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _running(process: subprocess.Popen[bytes], log: Path) -> bool:
    # Mosquitto logs "running" once every listener is open, and exits if one cannot be.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if " running" in log.read_text(errors="replace"):
            return True
        time.sleep(0.02)
    return False
