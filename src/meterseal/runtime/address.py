"""Listen and connect addresses: 'host:port' for IPv4 and host names, '[v6]:port' for IPv6.

`parse_address(text, default_port)` accepts `127.0.0.1:7400`, `[::1]:7400`, `[::]:0`,
`meters.example:7400`, a host alone (`::1`, `10.0.0.1`, `localhost`), or a port alone (`:7400`
or `7400`); the host defaults to 127.0.0.1, so nothing listens beyond the machine by
accident. `format_address` writes an `Address` back in the same form, brackets included;
`hide_password` makes a service URL fit for an error message or a log; `url_options` reads
the ``?name=value`` options of a service URL (MQTT, NATS).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import NamedTuple

from meterseal.errors import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
MAX_PORT = 65_535
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_NUMERIC = re.compile(r"[0-9.]+")
_PASSWORD = re.compile(r"(//[^/:@]*:)[^/@]*@")


class AddressError(ConfigurationError):
    """An address that is not host:port, [IPv6]:port, a host or a port."""


class Address(NamedTuple):
    """A host (IPv4, IPv6 without brackets, or a name) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def hide_password(url: str) -> str:
    """`url` with the password of its user part (scheme://user:PASSWORD@host) shown as ***."""
    return _PASSWORD.sub(r"\1***@", url)


def without_password(url: str) -> str:
    """`url` with the password of its user part left out (scheme://user@host)."""
    return _PASSWORD.sub(lambda match: match.group(1)[:-1] + "@", url)


def format_address(host: str, port: int) -> str:
    """'host:port', or '[host]:port' when the host is an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, default_port: int) -> Address:
    """'host:port', '[v6]:port', 'host' or ':port' to an `Address`; AddressError otherwise."""
    text = text.strip()
    if not text:
        raise AddressError("empty address (want host:port, [IPv6]:port, host or :port)")
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise AddressError(f"not an address: {text!r} (an IPv6 address is [host]:port)")
        return Address(_ipv6(host, text), _port(rest[1:], default_port, text))
    if text.count(":") > 1:  # an IPv6 address without a port
        return Address(_ipv6(text, text), default_port)
    if text.isascii() and text.isdigit():
        return Address(DEFAULT_HOST, _port(text, default_port, text))
    host, colon, port = text.partition(":")
    port_number = _port(port, default_port, text) if colon else default_port
    return Address(_host(host, text) if host else DEFAULT_HOST, port_number)


def _ipv6(host: str, text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(host))
    except ValueError:
        raise AddressError(f"not an IPv6 address: {host!r} in {text!r}") from None


def _port(port: str, default_port: int, text: str) -> int:
    if not port:
        return default_port
    if not (port.isascii() and port.isdigit()) or int(port) > MAX_PORT:
        raise AddressError(f"not a port (0-{MAX_PORT}): {port!r} in {text!r}")
    return int(port)


def _host(host: str, text: str) -> str:
    if _NUMERIC.fullmatch(host):  # digits and dots only: it must be a whole IPv4 address
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise AddressError(f"not an IPv4 address: {host!r} in {text!r}") from None
    if not host.isascii() or not _HOST_NAME.fullmatch(host):
        raise AddressError(f"not a host name or IPv4 address: {host!r} in {text!r}")
    return host


def url_options(query: str, allowed: frozenset[str], kind: str, shown_url: str) -> dict[str, str]:
    """A `kind` URL's options, each given once and named in `allowed`; ConfigurationError if not."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=False, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"bad {kind} URL options: {shown_url}") from None
    options = dict(pairs)
    unknown = set(options) - allowed
    if unknown or len(options) != len(pairs):
        wrong = ", ".join(sorted(unknown)) or "an option given twice"
        raise ConfigurationError(
            f"{kind} URL options are {', '.join(sorted(allowed))}; got {wrong}: {shown_url}"
        )
    return options
