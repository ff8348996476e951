"""Where and as whom an MQTT client connects: broker URL, credentials, TLS, client id.

One URL carries it all, as libpq's do::

    mqtt://host[:1883]
    mqtts://[user[:password]@]host[:8883][?ca=FILE&cert=FILE&key=FILE&password_file=FILE
                                           &client_id=ID]

``mqtts`` verifies the broker's certificate against ``ca`` (else the system's CAs) and its
host name; ``cert``/``key`` present a client certificate (the broker may take its common
name as the user name). A password is best kept in ``password_file`` (its first line); one
written into the URL works too. `MqttEndpoint.shown` never includes a password.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from meterseal.crypto import at_rest
from meterseal.errors import ConfigurationError
from meterseal.runtime.address import hide_password, url_options
from meterseal.runtime.tls import TlsIdentity, load_identity

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# Meters publish on PREFIX/readings/METER, read PREFIX/acks/METER (acquisition/mqtt.py). Here,
# not there: commands and settings name it without importing aiomqtt.
TOPIC_PREFIX = "meterseal/v1"
_OPTIONS = frozenset({"ca", "cert", "key", "password_file", "client_id"})
_MAX_CLIENT_ID = 128  # MQTT 5 only promises 23 bytes; Mosquitto takes far more


@dataclass(frozen=True)
class MqttEndpoint:
    """A broker to connect to and the identity to connect with."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttEndpoint:
        """The endpoint an ``mqtt://`` or ``mqtts://`` URL names (ConfigurationError if none)."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad MQTT URL {hide_password(url)}: {exc}") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigurationError(
                f"not an mqtt://host[:port] or mqtts://host[:port] URL: {hide_password(url)}"
            )
        if parts.path not in ("", "/") or parts.fragment:
            raise ConfigurationError(f"an MQTT URL has no path: {hide_password(url)}")
        options = _options(parts.query, url)
        tls = parts.scheme == "mqtts"
        if not tls and (set(options) & {"ca", "cert", "key"}):
            raise ConfigurationError(f"ca, cert and key need mqtts://: {hide_password(url)}")
        if ("cert" in options) != ("key" in options):
            raise ConfigurationError(f"give cert and key together: {hide_password(url)}")
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        if "password_file" in options:
            if password is not None:
                raise ConfigurationError("give the MQTT password in the URL or a file, not both")
            password = _first_line(Path(options["password_file"]))
        client_id = options.get("client_id")
        if client_id is not None and not 0 < len(client_id.encode()) <= _MAX_CLIENT_ID:
            raise ConfigurationError(f"client_id must be 1 to {_MAX_CLIENT_ID} bytes")

        def path(name: str) -> Path | None:
            return Path(options[name]) if name in options else None

        return cls(
            parts.hostname,
            port or DEFAULT_PORTS[parts.scheme],
            tls,
            urllib.parse.unquote(parts.username) if parts.username is not None else None,
            password,
            path("ca"),
            path("cert"),
            path("key"),
            client_id,
        )

    def shown(self) -> str:
        """The URL fit to print: no password, files by name."""
        user = f"{urllib.parse.quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        options = {
            name: str(value)
            for name, value in (
                ("ca", self.ca_file),
                ("cert", self.cert_file),
                ("key", self.key_file),
                ("client_id", self.client_id),
            )
            if value is not None
        }
        query = f"?{urllib.parse.urlencode(options)}" if options else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}{query}"

    def session_id(self) -> str:
        """A receiver's client id: configured, else its user name or certificate CN, else host's."""
        # Stable across restarts, so a restarted receiver resumes its session; one identity per
        # instance, so no two receivers share (and take over) one session. Two receivers on
        # one host without an identity of their own need a client_id each.
        if self.client_id:
            return self.client_id
        if self.username:
            return self.username
        if self.cert_file is not None:
            return certificate_user(self.cert_file)
        return f"meterseal-headend-{socket.gethostname()}"[:_MAX_CLIENT_ID]

    def tls_context(self) -> ssl.SSLContext | None:
        """TLS ≥ 1.2 verifying the broker (its certificate and host name); None for mqtt://."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert_file is not None and self.key_file is not None:
                _load_client_key(context, self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"MQTT TLS files of {self.shown()}: {exc}") from None
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of `aiomqtt.Client` for this broker and identity."""
        return {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "tls_context": self.tls_context(),
        }

    def with_user(self, username: str, password: str) -> MqttEndpoint:
        """The same broker and CA, connecting as another user by password."""
        return MqttEndpoint(
            self.host, self.port, self.tls, username, password, self.ca_file, None, None, None
        )


def random_client_id(prefix: str) -> str:
    """A client id nobody else uses (for clients without a session worth resuming)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def _options(query: str, url: str) -> dict[str, str]:
    return url_options(query, _OPTIONS, "MQTT", hide_password(url))


def _load_client_key(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    """Load a client certificate and its key, which may be encrypted at rest (MS_PASSPHRASE)."""
    passphrase = os.environ.get(at_rest.PASSPHRASE_VARIABLE)
    identity = TlsIdentity.read(cert_file, key_file, passphrase.encode() if passphrase else None)
    load_identity(context, identity)


def certificate_user(path: Path) -> str:
    """The MQTT user name a client certificate gives (its common name)."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read MQTT client certificate {path}: {exc}") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise ConfigurationError(f"MQTT client certificate {path} has no single common name")
    return names[0].value


def _first_line(path: Path) -> str:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigurationError(f"cannot read MQTT password file {path}: {exc.strerror}") from None
    if not lines or not lines[0]:
        raise ConfigurationError(f"MQTT password file {path} is empty")
    return lines[0]
