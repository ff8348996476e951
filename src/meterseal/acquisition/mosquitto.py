"""A Mosquitto broker locked down for meterseal: TLS, no anonymous clients, per-meter ACLs.

`write_broker` puts everything a broker needs in one directory: ``mosquitto.conf``, the
deployment CA, a server certificate it issued, ``passwd`` and ``acl``. Two TLS listeners:

- the password listener: meters (user name = meter id) and head-ends with a password;
- the certificate listener: head-ends presenting a client certificate from the deployment
  CA, whose common name is their user name.

On both the client id is the user name (``use_username_as_clientid``), so nobody without an
identity's password or key can take over its session or the readings queued for it. A
head-end's certificate name ends in a random suffix: Mosquitto drops the session of any
CONNECT that names its client id with Clean Start, even one it then refuses
(eclipse-mosquitto#3551), so the id of a session worth keeping must not be guessable. A meter
may publish on its own readings topic and read its own acks only; a head-end may read every
reading (``$share/...`` subscriptions included) and write acks. Meters' passwords are not
stored: each is an HMAC of the meter id under the deployment's MQTT secret, so the
password file follows the registry (`write_access` after registering or revoking meters,
then SIGHUP the broker).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.acquisition.mqtt import valid_meter_id
from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX, certificate_user
from meterseal.crypto import at_rest, certs
from meterseal.crypto.keys import write_private_key
from meterseal.errors import ConfigurationError

CONF = "mosquitto.conf"
PASSWD = "passwd"  # noqa: S105 - a file name
ACL = "acl"
CA = "ca.cert.pem"
SERVER_CERT = "server.cert.pem"
SERVER_KEY = "server.key.pem"
# Mosquitto's own default: the passwords are 256-bit random, so stretching adds nothing, and
# the broker pays the iterations on every connect.
PBKDF2_ITERATIONS = 101
# In the deployment directory: the secret the meters' passwords derive from, and the
# head-ends' client certificates and keys.
DEPLOYMENT_DIR = "mqtt"
METER_SECRET = "meters.key"  # noqa: S105 - a file name
_PASSWORD_LABEL = b"meterseal mqtt meter password v1\x00"


@dataclass(frozen=True)
class BrokerPlan:
    """Where the broker listens and keeps its files."""

    directory: Path
    bind: str = "127.0.0.1"
    password_port: int = 8883
    certificate_port: int = 8884
    prefix: str = TOPIC_PREFIX
    run_as: str = "mosquitto"  # the user a broker started as root drops to
    log_file: Path | None = None  # None: the system log


def meter_password(secret: bytes, meter_id: str) -> str:
    """The MQTT password of `meter_id`: an HMAC under the deployment's MQTT secret."""
    mac = hmac.new(secret, _PASSWORD_LABEL + meter_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def meter_passwords(secret: bytes) -> Callable[[str], str]:
    """`meter_password` bound to one secret, as `MqttLink(passwords=...)` takes it."""
    return lambda meter_id: meter_password(secret, meter_id)


def deployment_meter_secret(
    deployment: Path, passphrase: bytes | None, *, create: bool = False
) -> bytes | None:
    """The deployment's MQTT secret (made on first use if `create`); None if it has none."""
    path = deployment / DEPLOYMENT_DIR / METER_SECRET
    if not create and not path.exists():
        return None
    return at_rest.ensure_secret_file(path, lambda: os.urandom(32), passphrase)


def deployment_headends(deployment: Path) -> list[str]:
    """The MQTT user names of the head-ends that have a client certificate in the deployment."""
    return sorted(map(certificate_user, (deployment / DEPLOYMENT_DIR).glob("*.cert.pem")))


def password_line(username: str, password: str, salt: bytes) -> str:
    """One ``passwd`` line in Mosquitto 2's PBKDF2-SHA512 format (what mosquitto_passwd writes)."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    encoded = [base64.b64encode(b).decode() for b in (salt, digest)]
    return f"{_checked_user(username)}:$7${PBKDF2_ITERATIONS}${encoded[0]}${encoded[1]}"


def password_file(users: Iterable[tuple[str, str]], rng: Callable[[int], bytes]) -> str:
    """A ``passwd`` file for (user name, password) pairs, each with its own salt."""
    return "".join(f"{password_line(user, password, rng(12))}\n" for user, password in users)


def acl_file(meter_ids: Iterable[str], headends: Iterable[str], prefix: str = TOPIC_PREFIX) -> str:
    """The ``acl`` file: each meter its own readings and acks, head-ends all readings and acks."""
    headends = sorted(set(headends))
    lines = ["# Written by meterseal; anything not granted here is refused.", ""]
    for name in headends:
        lines += [f"user {_checked_user(name)}", f"topic read {prefix}/readings/+"]
        lines += [f"topic write {prefix}/acks/+", ""]
    for meter_id in meter_ids:
        if meter_id in headends:
            raise ConfigurationError(f"meter id {meter_id!r} is also a head-end's MQTT user name")
        lines += [f"user {_checked_user(meter_id)}", f"topic write {prefix}/readings/{meter_id}"]
        lines += [f"topic read {prefix}/acks/{meter_id}", ""]
    return "\n".join(lines)


def mosquitto_conf(plan: BrokerPlan) -> str:
    """``mosquitto.conf`` for `plan` (paths absolute, as Mosquitto resolves them from its cwd)."""
    d = plan.directory.resolve()
    tls = [f"cafile {d / CA}", f"certfile {d / SERVER_CERT}", f"keyfile {d / SERVER_KEY}"]
    tls += ["tls_version tlsv1.2", "use_username_as_clientid true"]
    log = f"file {plan.log_file.resolve()}" if plan.log_file else "syslog"
    return "\n".join(
        [
            "# Mosquitto for meterseal (written by meterseal; see docs/acquisition.md#mqtt).",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {d / PASSWD}",
            f"acl_file {d / ACL}",
            f"user {plan.run_as}",
            # Queued readings survive a broker restart; what it still loses, meters resend.
            "persistence true",
            f"persistence_location {d / 'data'}/",
            "autosave_interval 60",
            # A head-end away for a while finds the readings queued, up to this many per session.
            "max_queued_messages 100000",
            "max_packet_size 65536",
            "set_tcp_nodelay true",
            f"log_dest {log}",  # Mosquitto's default types: connections and refusals too
            "",
            "# Meters, and head-ends with a password.",
            f"listener {plan.password_port} {plan.bind}",
            *tls,
            "require_certificate false",
            "",
            "# Head-ends with a client certificate of the deployment CA (user name: its CN).",
            f"listener {plan.certificate_port} {plan.bind}",
            *tls,
            "require_certificate true",
            "use_identity_as_username true",
            "",
        ]
    )


def write_broker(
    plan: BrokerPlan,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    *,
    now: dt.datetime,
    rng: Callable[[int], bytes],
) -> None:
    """Write the broker's configuration, the CA and a server certificate for `hosts`."""
    d = plan.directory
    d.mkdir(parents=True, exist_ok=True)
    (d / "data").mkdir(mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.issue_tls_certificate(
        ca_key, ca_cert, hosts[0] if hosts else "", key.public_key(), hosts=hosts, now=now, rng=rng
    )
    # Mosquitto reads its key unencrypted: this one is the broker's, not a deployment secret.
    write_private(d / SERVER_KEY, _pem_key(key))
    write_private(d / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))
    write_private(d / CA, ca_cert.public_bytes(serialization.Encoding.PEM))
    write_private(d / CONF, mosquitto_conf(plan))


def write_access(
    directory: Path,
    meter_ids: Iterable[str],
    secret: bytes,
    *,
    headends: Iterable[str] = (),
    headend_passwords: Mapping[str, str] | None = None,
    prefix: str = TOPIC_PREFIX,
    rng: Callable[[int], bytes] = os.urandom,
) -> int:
    """Write ``passwd`` and ``acl`` for these meters and head-ends; the number of meters."""
    meter_ids = list(meter_ids)
    passwords = dict(headend_passwords or {})
    users = [(m, meter_password(secret, m)) for m in meter_ids] + sorted(passwords.items())
    acl = acl_file(meter_ids, {*headends, *passwords}, prefix)
    write_private(directory / PASSWD, password_file(users, rng))
    write_private(directory / ACL, acl)
    return len(meter_ids)


def write_client_certificate(
    directory: Path,
    name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    passphrase: bytes | None,
    now: dt.datetime,
    rng: Callable[[int], bytes],
) -> tuple[Path, Path]:
    """Head-end `name`'s client certificate (CN: `name`-random) and key, in `directory`."""
    # The CN is the MQTT user name and so the client id, which must not be guessable.
    at_rest.private_directory(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    user = _checked_user(f"{name}-{rng(8).hex()}")
    cert = certs.issue_tls_certificate(
        ca_key, ca_cert, user, key.public_key(), client=True, now=now, rng=rng
    )
    cert_path, key_path = directory / f"{name}.cert.pem", directory / f"{name}.key.pem"
    write_private_key(key_path, key, passphrase)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, text: str | bytes) -> None:
    """Create or replace `path` readable by its owner only (chown it to the broker's user)."""
    at_rest.write_private_file(path, text.encode() if isinstance(text, str) else text)


def _checked_user(name: str) -> str:
    # ':' ends a passwd user name, white space an acl line; '+', '#' and '/' break topics.
    if not valid_meter_id(name) or ":" in name or any(c.isspace() for c in name):
        raise ConfigurationError(f"{name!r} cannot be an MQTT user name")
    return name
