"""docs/kvs.md's commands, run as written in a deployment `meterseal init` made.

Real processes for the servers (`cas serve`, `kvs serve`, printing their URLs), the other
commands in-process through the CLI; only the listening ports (0), the URLs the servers
printed and the key each `keys add` printed are filled in. The attestation backend is the
simulated one: the protocol is real, the hardware guarantee is not.
"""

from __future__ import annotations

import random
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseal.bench.served import Served
from meterseal.kvs.gateway_client import GatewayClient, GatewayError
from meterseal.kvs.service import GatewayOptions
from meterseal.kvs.service_trust import KVS_STAGE
from meterseal.trust.measurement import stage_measurement
from tests.command_line import invoke

DOC = Path(__file__).parents[2] / "docs" / "kvs.md"
MONTH = random.Random(12).randbytes(9 * 1024 * 1024 + 5)  # three 4 MiB chunks


def doc_commands() -> list[str]:
    """The command lines of docs/kvs.md's console blocks, in order."""
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment made by `meterseal init` (RSA-4096 keys take a moment)."""
    directory = tmp_path_factory.mktemp("kvs") / "utility"
    done = invoke(["init", str(directory)], env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    assert "policy kvs-gateway " in " ".join(done.output.split())
    return directory


class Session:
    """What the documented commands left behind: servers, URLs, keys."""

    def __init__(self, config: Path) -> None:
        self.env = {"MS_CONFIG": str(config), "COLUMNS": "250"}
        self.served: list[Served] = []
        self.cas = self.gateway = ""
        self.keys: list[tuple[str, str]] = []  # (id, key) as `keys add` printed them
        self.outputs: dict[str, str] = {}

    def serve(self, args: list[str], ready: str) -> str:
        served = Served([*args, "--listen", "127.0.0.1:0"], ready=ready,
                        env={**_environ(), **self.env})  # fmt: skip
        self.served.append(served)
        served.wait_ready(120)
        return served.endpoint(ready)

    def run(self, line: str) -> None:
        if line.startswith("export MS_KVS_KEY="):
            self.env["MS_KVS_KEY"] = self.keys[-1][1]
            self.await_key()
            return
        args = shlex.split(line)[1:]
        args = [self.keys[0][0] if a == "KEY_ID" else a for a in args]
        if args[:2] == ["cas", "serve"]:
            self.cas = self.serve(args, "cas")
            return
        if args[:2] == ["kvs", "serve"]:
            self.gateway = self.serve([*args, "--cas", self.cas], "kvs")
            return
        extra = ["--cas", self.cas] if args[:2] == ["kvs", "keys"] else ["--gateway", self.gateway]
        done = invoke([*args, *extra], env=self.env)
        assert done.exit_code == 0, (line, done.output)
        self.outputs[line] = done.output
        if args[:3] == ["kvs", "keys", "add"]:
            key_id = re.search(r"key id ([0-9a-f]{16})", done.output)
            key = re.search(r"^(kvk_\S+)$", done.output, re.MULTILINE)
            assert key_id is not None, done.output
            assert key is not None, done.output
            self.keys.append((key_id.group(1), key.group(1)))

    def await_key(self) -> None:
        """Gateways re-read the key table every 2 s: wait until the new key is known."""
        deadline = time.monotonic() + 15
        with GatewayClient(self.gateway, self.env["MS_KVS_KEY"]) as client:
            while True:
                try:
                    client.list_page("meters", limit=1)
                    return
                except GatewayError as exc:
                    if exc.status == 403:  # known, outside its scope (an admin key)
                        return
                    if exc.status != 401 or time.monotonic() > deadline:
                        raise
                time.sleep(0.2)


def _environ() -> dict[str, str]:
    """This environment, with this checkout first on the path (the test changes directory)."""
    import os

    import meterseal

    source = str(Path(meterseal.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def session(deployment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """The documented commands' session, run in a working directory holding month.cbor."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "month.cbor").write_bytes(MONTH)
    session = Session(deployment / "meterseal.toml")
    try:
        yield session
    finally:
        for served in reversed(session.served):
            served.stop()


def test_the_documented_commands_run_as_written(
    session: Session, deployment: Path, tmp_path: Path
) -> None:
    lines = doc_commands()
    assert lines[0] == "meterseal cas serve"
    for line in lines:
        session.run(line)
    out = session.outputs
    put = out["meterseal kvs put meters 2026-12/CUST-0001 month.cbor"]
    assert f"version 1 ({len(MONTH)} bytes, ec:6+2)" in put
    assert "2026-12/CUST-0001" in out["meterseal kvs ls meters --prefix 2026-12/"]
    assert (tmp_path / "first-kib.bin").read_bytes() == MONTH[:1024]
    assert "is rep:3" in out["meterseal kvs policy meters --key 2026-12/CUST-0001 rep:3"]
    assert "bucket meters: hybrid:6+2" in out["meterseal kvs policy meters"]
    assert "healthy: True" in out["meterseal kvs scrub --repair"]
    assert "2 keys" in out["meterseal kvs keys list"]
    # each `kvs keys` command attests as the gateway, and names the simulated backend
    assert "simulated: no hardware guarantee" in out["meterseal kvs keys list"]
    # the storage nodes hold no plaintext: no 64-byte piece of the object is on their disks
    stored = b"".join(p.read_bytes() for p in (deployment / "kvs").rglob("*") if p.is_file())
    assert stored
    assert not any(MONTH[i : i + 64] in stored for i in range(0, len(MONTH), len(MONTH) // 50))
    # the exporter's key was revoked last: the gateway refuses it within its table's lifetime
    exporter = session.keys[0][1]
    deadline = time.monotonic() + 15
    with GatewayClient(session.gateway, exporter) as client:
        while True:
            try:
                client.list_page("meters")
            except GatewayError as exc:
                refused = exc.status
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert refused == 401


def test_a_client_without_a_key_is_told_where_to_get_one(deployment: Path) -> None:
    done = invoke(["kvs", "ls", "meters"], env={"MS_CONFIG": str(deployment / "meterseal.toml"),
                                                 "MS_KVS_KEY": ""})  # fmt: skip
    assert done.exit_code == 2
    assert (
        "set MS_KVS_KEY to an API key of the KVS gateway (`meterseal kvs keys add`)" in done.output
    )


def test_the_docs_placeholder_key_is_refused_in_one_line(deployment: Path) -> None:
    # `export MS_KVS_KEY=kvk_…` pasted as the page shows it: a clear error, not a traceback.
    done = invoke(["kvs", "ls", "meters"], env={"MS_CONFIG": str(deployment / "meterseal.toml"),
                                                 "MS_KVS_KEY": "kvk_…"})  # fmt: skip
    assert done.exit_code == 2
    assert "give the kvk_… key exactly as `meterseal kvs keys add` printed it" in done.output
    assert "Traceback" not in done.output


def test_provision_puts_the_master_secret_once_and_allows_the_gateway(tmp_path: Path) -> None:
    directory, store = tmp_path / "deployment", f"sqlite:///{tmp_path / 'cas.db'}"
    env = {"MS_CONFIG": "none"}
    assert invoke(["cas", "init", "-d", str(directory)], env=env).exit_code == 0
    first = invoke(["kvs", "provision", "-d", str(directory), "--store", store], env=env)
    assert first.exit_code == 0, first.output
    text = " ".join(first.output.split())
    assert "secret kvs/master v1" in text
    assert f"policy kvs-gateway {stage_measurement(KVS_STAGE).hex} may receive kvs/master" in text
    again = invoke(["kvs", "provision", "-d", str(directory), "--store", store], env=env)
    assert "secret kvs/master v1 (kept)" in " ".join(again.output.split())


@pytest.mark.parametrize(("flags", "every"), [([], 30.0), (["--sweep-every", "0"], 0.0)])
def test_serve_sweeps_as_often_as_configured_and_the_flag_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], every: float
) -> None:
    config = tmp_path / "meterseal.toml"
    config.write_text('[cas]\nurl = "http://127.0.0.1:9"\n[kvs]\nsweep_every = 30\n')
    served: list[GatewayOptions] = []

    async def serve_gateway(options: GatewayOptions, *, own_process: bool = False) -> None:
        assert own_process  # kvs serve's process is the gateway's: its heap is set for it
        served.append(options)

    monkeypatch.setattr("meterseal.kvs.service.serve_gateway", serve_gateway)
    result = invoke(["--config", str(config), "kvs", "serve", *flags])
    assert result.exit_code == 0, result.output
    assert [options.sweep_every for options in served] == [every]


def test_a_negative_sweep_interval_is_refused(tmp_path: Path) -> None:
    result = invoke(["kvs", "serve", "--cas", "http://127.0.0.1:9", "--sweep-every", "-1"])
    assert result.exit_code == 2
    assert "--sweep-every" in result.output


def test_provision_with_hosts_issues_the_tls_identities_from_the_deployment_ca_once(
    tmp_path: Path,
) -> None:
    # `kvs provision` and `cascadb provision` share how a TLS identity is issued and how the
    # result is printed; each identity is issued on the first run, kept on the next.
    directory, store = tmp_path / "deployment", f"sqlite:///{tmp_path / 'cas.db'}"
    env = {"MS_CONFIG": "none"}
    assert invoke(["keys", "init", str(directory)], env=env).exit_code == 0
    assert invoke(["cas", "init", "-d", str(directory)], env=env).exit_code == 0
    common = ["-d", str(directory), "--store", store]
    refused = invoke(["cascadb", "provision", *common], env=env)
    assert refused.exit_code != 0
    assert "CascaDB serves only TLS" in " ".join(refused.output.split())
    hosts = ["--host", "127.0.0.1", "--host", "kvs.example"]
    for kept in ("", " (kept)"):
        kvs = invoke(["kvs", "provision", *common, *hosts], env=env)
        cdb = invoke(["cascadb", "provision", *common, *hosts, "--bucket", "meters"], env=env)
        assert (kvs.exit_code, cdb.exit_code) == (0, 0), kvs.output + cdb.output
        kvs_text, cdb_text = " ".join(kvs.output.split()), " ".join(cdb.output.split())
        assert f"secret kvs/master v1{kept} " in kvs_text, kvs_text
        assert f"secret tls/kvs-gateway v1{kept} " in kvs_text, kvs_text
        assert f"secret tls/cascadb v1{kept} " in cdb_text, cdb_text
        measured = stage_measurement(KVS_STAGE).hex
        assert f"policy kvs-gateway {measured} may receive kvs/master, tls/kvs-gateway" in kvs_text
        assert re.search(r"policy cascadb [0-9a-f]{64} may receive .*tls/cascadb", cdb_text)
