"""What the tests share about TLS: the certificate a server presents."""

from __future__ import annotations

import socket
import ssl


def served_certificate(url: str, verify: ssl.SSLContext) -> bytes:
    """The DER certificate the server at https `url` presents, verified by `verify`."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        verify.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der
