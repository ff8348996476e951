"""Where and as whom a NATS client connects: server URL, credentials, TLS.

One URL carries it all, as for MQTT::

    nats://[user[:password]@|token@]host[:4222]
    tls://[user[:password]@|token@]host[:4222][?ca=FILE&cert=FILE&key=FILE]

``tls`` verifies the server's certificate against ``ca`` (the deployment CA; else the
system's CAs) and its host name; ``cert``/``key`` present a client certificate (mutual TLS;
the key may be encrypted at rest, read with MS_PASSPHRASE). `NatsEndpoint.shown` never
includes a password or token; `connect_options` hands nats-py the server without them, and
`connect` connects with them, bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterseal.crypto import at_rest
from meterseal.errors import ConfigurationError
from meterseal.runtime.address import url_options
from meterseal.runtime.tls import CIPHERS, TlsIdentity, load_identity

DEFAULT_PORT = 4222
SCHEMES = frozenset({"nats", "tls"})
if TYPE_CHECKING:
    from nats.aio.client import Client

_OPTIONS = frozenset({"ca", "cert", "key"})
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NatsEndpoint:
    """A NATS server to connect to and the identity to connect with."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def parse(cls, url: str) -> NatsEndpoint:
        """The endpoint a ``nats://`` or ``tls://`` URL names (ConfigurationError if none)."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad NATS URL {redacted(url)}: {exc}") from None
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ConfigurationError(
                f"not a nats://host[:port] or tls://host[:port] URL: {redacted(url)}"
            )
        if parts.path not in ("", "/") or parts.fragment:
            raise ConfigurationError(f"a NATS URL has no path: {redacted(url)}")
        options = _options(parts.query, url)
        tls = parts.scheme == "tls"
        if not tls and options:
            raise ConfigurationError(f"ca, cert and key need tls://: {redacted(url)}")
        if ("cert" in options) != ("key" in options):
            raise ConfigurationError(f"give cert and key together: {redacted(url)}")
        user = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        token = None
        if user is not None and password is None:  # nats://token@host, as nats-py reads it
            user, token = None, user

        def path(name: str) -> Path | None:
            return Path(options[name]) if name in options else None

        return cls(
            parts.hostname,
            port or DEFAULT_PORT,
            tls,
            user,
            password,
            token,
            path("ca"),
            path("cert"),
            path("key"),
        )

    @property
    def server(self) -> str:
        """The server's URL without credentials or options, as nats-py takes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"

    def shown(self) -> str:
        """The URL fit to print: password and token as ***, files by name."""
        scheme, rest = self.server.split("://", 1)
        user = urllib.parse.quote(self.user or "", safe="")
        who = f"{user}{':***' if self.password else ''}@" if self.user else ""
        who = "***@" if self.token else who
        files = (("ca", self.ca_file), ("cert", self.cert_file), ("key", self.key_file))
        options = {name: str(value) for name, value in files if value is not None}
        query = f"?{urllib.parse.urlencode(options, safe='/')}" if options else ""
        return f"{scheme}://{who}{rest}{query}"

    def tls_context(self) -> ssl.SSLContext | None:
        """TLS ≥ 1.2 verifying the server (certificate and host name); None for nats://."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"NATS CA file of {self.shown()}: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(CIPHERS)
        if self.cert_file is not None and self.key_file is not None:
            passphrase = os.environ.get(at_rest.PASSPHRASE_VARIABLE)
            identity = TlsIdentity.read(
                self.cert_file, self.key_file, passphrase.encode() if passphrase else None
            )
            try:
                load_identity(context, identity)
            except ssl.SSLError as exc:
                raise ConfigurationError(f"NATS client key of {self.shown()}: {exc}") from None
        return context

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of `nats.connect` for this server and identity."""
        options: dict[str, Any] = {"servers": [self.server], "error_cb": _log_error}
        if self.tls:
            options["tls"] = self.tls_context()
        if self.user is not None:
            options["user"] = self.user
            options["password"] = self.password or ""
        if self.token is not None:
            options["token"] = self.token
        return options


async def _log_error(exc: Exception) -> None:
    # nats-py's default logs a traceback for every failed attempt (a refused handshake too).
    _log.warning("NATS: %s: %s", type(exc).__name__, exc)


async def connect(url: str, **options: Any) -> Client:
    """`nats.connect` to the endpoint `url` names, with `options`; given up after a while."""
    import nats

    endpoint = NatsEndpoint.parse(url)
    attempts = max(0, int(str(options.get("max_reconnect_attempts", 0))))
    within = float(str(options.get("connect_timeout", 2))) * (attempts + 1) + 2.0 * attempts + 1.0
    # nats-py can wait forever closing a connection whose TLS handshake this side aborted
    # (a server certificate that does not verify): the whole attempt is bounded here.
    merged = {**endpoint.connect_options(), **options}  # the caller's callbacks win
    return await asyncio.wait_for(nats.connect(**merged), within)


def shown(url: str) -> str:
    """`url` fit to print (no credentials), whether or not it parses."""
    try:
        return NatsEndpoint.parse(url).shown()
    except ConfigurationError:
        return redacted(url)


def redacted(url: str) -> str:
    """`url` with any user information replaced by ***, for error messages."""
    try:
        parts = urllib.parse.urlsplit(url)
        if "@" not in parts.netloc:
            return url
        netloc = "***@" + parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparseable URL>"


def _options(query: str, url: str) -> dict[str, str]:
    return url_options(query, _OPTIONS, "NATS", redacted(url))
