"""The client commands against a gateway on memory nodes: stdin and stdout, lists, refusals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.command_line import invoke
from tests.kvs.gateway_fixtures import Gateway, serve_gateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """A gateway on memory nodes with one key per scope."""
    with serve_gateway() as served:
        yield served


def _kvs(gateway: Gateway, scope: str, *args: str, input: str | None = None) -> tuple[int, str]:
    env = {"MS_CONFIG": "none", "MS_KVS_KEY": gateway.keys[scope], "COLUMNS": "200"}
    done = invoke(["kvs", *args, "--gateway", gateway.url], env=env, input=input)
    return done.exit_code, done.output


def test_put_from_stdin_and_get_to_stdout(gateway: Gateway) -> None:
    code, out = _kvs(gateway, "meters-rw", "put", "meters", "cli/stdin", "-", input="from stdin")
    assert code == 0, out
    assert "stored meters/cli/stdin version 1 (10 bytes, ec:3+2)" in out
    code, out = _kvs(gateway, "meters-rw", "get", "meters", "cli/stdin")
    assert code == 0, out
    assert out == "from stdin"
    code, out = _kvs(gateway, "meters-read", "get", "meters", "cli/stdin", "--range", "5-")
    assert out == "stdin"
    code, out = _kvs(gateway, "meters-rw", "stat", "meters", "cli/stdin")
    assert "meters/cli/stdin: 10 bytes, version 1, ec:3+2" in out


def test_ls_lists_in_key_order_and_stops_at_its_limit(gateway: Gateway) -> None:
    names = [f"cli/ls/{n:03d}" for n in (7, 150, 3, 99, 42)]
    for name in names:
        assert _kvs(gateway, "meters-rw", "put", "meters", name, "-", input=name)[0] == 0
    code, out = _kvs(gateway, "meters-rw", "ls", "meters", "--prefix", "cli/ls/")
    assert code == 0, out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("cli/ls/")]
    assert listed == sorted(names)
    assert "5 objects" in out
    code, out = _kvs(gateway, "meters-rw", "ls", "meters", "--prefix", "cli/ls/", "--limit", "2")
    assert "2 objects" in out
    code, out = _kvs(gateway, "meters-rw", "ls", "meters", "--prefix", "cli/ls/", "--limit", "1")
    assert out.rstrip().endswith("\n1 object"), out


def test_refusals_end_the_command_with_the_gateways_reason(gateway: Gateway) -> None:
    code, out = _kvs(gateway, "bills-rw", "get", "meters", "cli/stdin")
    assert code == 2
    assert "error: the gateway answered 403: not allowed" in out
    code, out = _kvs(gateway, "meters-rw", "rm", "meters", "cli/absent")
    assert code == 2
    assert "404: no such object" in out
    code, out = _kvs(gateway, "meters-read", "policy", "meters")
    assert code == 0, out
    assert "bucket meters: " in out
