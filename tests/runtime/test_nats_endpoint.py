"""NATS URLs: server, credentials and TLS files, and nothing secret when shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterseal.errors import ConfigurationError
from meterseal.runtime.nats_endpoint import NatsEndpoint, redacted, shown


def test_a_tls_url_names_the_server_ca_and_client_identity() -> None:
    endpoint = NatsEndpoint.parse("tls://bus.example:4443?ca=/d/ca.pem&cert=/d/c.pem&key=/d/k.pem")
    assert endpoint.server == "tls://bus.example:4443"
    assert (endpoint.ca_file, endpoint.cert_file, endpoint.key_file) == (
        Path("/d/ca.pem"),
        Path("/d/c.pem"),
        Path("/d/k.pem"),
    )
    assert endpoint.shown() == "tls://bus.example:4443?ca=/d/ca.pem&cert=/d/c.pem&key=/d/k.pem"


def test_credentials_go_to_nats_py_as_options_and_are_never_shown() -> None:
    endpoint = NatsEndpoint.parse("nats://svc:s%40cret@10.0.0.1")
    options = endpoint.connect_options()
    assert options["servers"] == ["nats://10.0.0.1:4222"]
    assert (options["user"], options["password"]) == ("svc", "s@cret")
    assert "s@cret" not in endpoint.shown()
    assert "s@cret" not in repr(endpoint)
    token = NatsEndpoint.parse("nats://t0ken@[::1]:5000")
    assert token.connect_options()["token"] == "t0ken"
    assert token.shown() == "nats://***@[::1]:5000"
    assert "t0ken" not in repr(token)


def test_plain_nats_has_no_tls_context() -> None:
    endpoint = NatsEndpoint.parse("nats://127.0.0.1:4222")
    assert endpoint.tls_context() is None
    assert "tls" not in endpoint.connect_options()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4222",
        "nats://127.0.0.1:4222?ca=/ca.pem",  # TLS files need tls://
        "tls://127.0.0.1?cert=/c.pem",  # a certificate without its key
        "tls://127.0.0.1?ca=/a&ca=/b",
        "tls://127.0.0.1?password=x",
        "tls://127.0.0.1/path",
        "nats://u:pw@127.0.0.1:notaport",
    ],
)
def test_bad_urls_are_refused_without_their_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        NatsEndpoint.parse(url)
    assert ":pw@" not in str(caught.value)


def test_shown_and_redacted_hide_user_information() -> None:
    assert shown("nats://u:pw@h:1") == "nats://u:***@h:1"
    assert redacted("nats://u:pw@h:notaport") == "nats://***@h:notaport"
    assert shown("nats://h:1") == "nats://h:1"
