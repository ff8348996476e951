"""Listen and connect addresses: IPv4, bracketed IPv6, host names, a port alone."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import ConfigurationError
from meterseal.runtime.address import Address, AddressError, format_address, parse_address

ports = st.integers(0, 65_535)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7400", ("127.0.0.1", 7400)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:7400", ("::1", 7400)),
        ("[::]:0", ("::", 0)),
        ("[2001:DB8::1]:443", ("2001:db8::1", 443)),
        ("[::1]", ("::1", 9)),
        ("::1", ("::1", 9)),
        ("fe80::1%eth0", ("fe80::1%eth0", 9)),
        ("localhost:8080", ("localhost", 8080)),
        ("meters.example.org", ("meters.example.org", 9)),
        (":7401", ("127.0.0.1", 7401)),
        ("7401", ("127.0.0.1", 7401)),
        ("10.0.0.1", ("10.0.0.1", 9)),
        (" 127.0.0.1:1 ", ("127.0.0.1", 1)),
    ],
)
def test_the_documented_forms_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, 9) == Address(*expected)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty address"),
        ("host:port", "not a port"),
        ("127.0.0.1:65536", "not a port"),
        ("127.0.0.1:-1", "not a port"),
        ("[::1", r"\[host\]:port"),
        ("[::1]7400", r"\[host\]:port"),
        ("[not-v6]:1", "not an IPv6 address"),
        ("::g:1", "not an IPv6 address"),
        ("999.1.1.1:80", "not an IPv4 address"),
        ("bad_host:80", "not a host name"),
        ("-dash.example:80", "not a host name"),
        ("hôte:80", "not a host name"),
        ("99999", "not a port"),
    ],
)
def test_anything_else_is_a_configuration_error_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(AddressError, match=says) as raised:
        parse_address(text, 9)
    assert isinstance(raised.value, ConfigurationError)


@given(st.ip_addresses(), ports)
def test_any_ip_address_round_trips_through_its_text(ip: object, port: int) -> None:
    host = str(ip)
    text = format_address(host, port)
    assert parse_address(text, 1) == (host, port)
    assert str(parse_address(text, 1)) == text
    assert text.startswith("[") is (isinstance(ip, ipaddress.IPv6Address))


@given(st.text(max_size=40), ports)
def test_parsing_any_text_either_gives_an_address_or_an_address_error(
    text: str, default: int
) -> None:
    try:
        address = parse_address(text, default)
    except AddressError:
        return
    assert 0 <= address.port <= 65_535
    assert address.host
