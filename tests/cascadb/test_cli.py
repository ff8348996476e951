"""`meterseal cascadb sql` against a served KVS gateway (memory nodes), and docs/cascadb.md's
"Running the server" commands run as written in a deployment `meterseal init` made.

Real processes for the servers (`cas serve`, `cascadb serve`, printing their addresses), the
other meterseal commands in-process through the CLI, psql and curl as processes; only the
listening ports (0), the addresses the servers printed, the key `api-keys create` printed and
DEPLOYMENT_DIR are filled in. The attestation backend is the simulated one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from meterseal.bench.served import Served
from tests.command_line import invoke
from tests.kvs.gateway_fixtures import serve_gateway

DOC = Path(__file__).parents[2] / "docs" / "cascadb.md"


def test_sql_runs_statements_in_the_gateway_bucket() -> None:
    with serve_gateway() as gateway:
        env = {"MS_KVS_KEY": gateway.keys["meters-rw"]}
        common = ["--gateway", gateway.url, "--bucket", "meters"]
        created = invoke(
            ["cascadb", "sql", "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); "
             "INSERT INTO t VALUES (?, ?), (2, NULL)", "--param", "1", "--param", "x", *common],
            env=env,
        )  # fmt: skip
        assert created.exit_code == 0, created.output
        assert created.output.strip() == "INSERT 2"
        listed = invoke(["cascadb", "sql", "SELECT a, b FROM t ORDER BY a", *common], env=env)
        assert listed.output.splitlines() == ["a\tb", "1\tx", "2\tNULL"]
        refused = invoke(["cascadb", "sql", "SELECT 1", *common], env={"MS_KVS_KEY": ""})
        assert refused.exit_code == 2
        assert "set MS_KVS_KEY" in refused.output


def test_the_documented_sql_commands_run_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), re.DOTALL)
    block = next(b for b in blocks if b.startswith("export MS_KVS_KEY="))
    lines = [shlex.split(line, comments=True) for line in block.splitlines()[1:]]
    expected = re.findall(r"# (.*)$", block.splitlines()[-1])[0]
    # followed in order, the page's `cascadb serve` (default bucket) must not meet these tables
    assert all(args[args.index("--bucket") + 1] != "cascadb" for args in lines)
    with serve_gateway() as gateway:  # the file names it, as `meterseal init --host` does
        config = tmp_path / "meterseal.toml"
        config.write_text(f'[kvs]\nurl = "{gateway.url}"\n')
        env = {"MS_KVS_KEY": gateway.keys["all-rw"], "MS_CONFIG": str(config)}
        outputs = []
        for args in lines:
            done = invoke(args[1:], env=env)
            assert done.exit_code == 0, (args, done.output)
            outputs.append(done.output)
        assert [o.strip() for o in outputs[:2]] == ["CREATE TABLE", "INSERT 1"]
        shown = ", ".join(outputs[2].splitlines()).replace("\t", "<TAB>")
        assert shown == expected == "ts<TAB>kwh, 1<TAB>0.250"


def server_commands() -> list[str]:
    """The lines of docs/cascadb.md's console block that starts the CAS."""
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), re.DOTALL)
    block = next(b for b in blocks if b.startswith("meterseal cas serve"))
    return [line.strip() for line in block.splitlines() if line.strip()]


def _environ() -> dict[str, str]:
    """This environment, with this checkout first on the path."""
    import meterseal

    source = str(Path(meterseal.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.skipif(
    shutil.which("psql") is None or shutil.which("curl") is None, reason="needs psql and curl"
)
def test_the_documented_server_commands_run_as_written(tmp_path: Path) -> None:
    directory = tmp_path / "utility"
    made = invoke(["init", str(directory)], env={"COLUMNS": "250"})
    assert made.exit_code == 0, made.output
    env = {"MS_CONFIG": str(directory / "meterseal.toml"), "COLUMNS": "250"}
    served: list[Served] = []
    cas = api = pg = key = ""
    outputs: dict[str, str] = {}
    try:
        for line in server_commands():
            shown = line.replace("DEPLOYMENT_DIR", str(directory))
            args = shown.split()
            if args[:3] == ["meterseal", "cas", "serve"] or args[:3] == [
                "meterseal",
                "cascadb",
                "serve",
            ]:
                extra = [] if args[1] == "cas" else ["--cas", cas, "--pg-listen", "127.0.0.1:0"]
                server = Served([*args[1:], "--listen", "127.0.0.1:0", *extra], ready=args[1],
                                env={**_environ(), **env})  # fmt: skip
                served.append(server)
                server.wait_ready(120)
                if args[1] == "cas":
                    cas = server.endpoint("cas")
                else:
                    api, pg = server.endpoint("cascadb"), server.endpoint("cascadb-pg")
                continue
            if shown.startswith("export PGPASSWORD="):
                env["PGPASSWORD"] = key
                continue
            if args[0] in ("psql", "curl"):
                host, port = pg.removeprefix("postgresql://").rsplit(":", 1)
                shown = shown.replace("port=5433", f"port={port}").replace(
                    "host=127.0.0.1", f"host={host}"
                )
                shown = shown.replace("https://127.0.0.1:7472", api)
                ran = subprocess.run(
                    ["bash", "-c", shown],
                    env={**os.environ, **env},
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert ran.returncode == 0, (line, ran.stdout, ran.stderr)
                outputs[args[0]] = ran.stdout
                continue
            password = re.match(r"MS_ACCOUNT_PASSWORD='(.*?)' ", shown)
            extra_env = {"MS_ACCOUNT_PASSWORD": password.group(1) * 8} if password else {}
            command = shown[password.end() :] if password else shown
            done = invoke(command.split()[1:], env={**env, **extra_env})
            assert done.exit_code == 0, (line, done.output)
            if "api-keys create" in command:
                found = re.search(r"^api_key (msk_\S+)$", done.output, re.MULTILINE)
                assert found is not None, done.output
                key = found.group(1)
        assert outputs["psql"].split() == ["CREATE", "TABLE", "INSERT", "0", "2"]
        answer = json.loads(outputs["curl"])
        assert answer == {
            "command": "SELECT",
            "columns": ["ts", "kwh"],
            "rows": [[1, "0.250"], [2, "0.500"]],  # NUMERIC(10, 3): its scale
            "rowcount": -1,
        }
        cascadb = served[-1]
    finally:
        for server in reversed(served):
            server.stop()
    printed = "\n".join(cascadb.lines)
    assert "keys from CAS" in printed
    assert "simulated: no hardware guarantee" in printed
    assert "cascadb mdc: INSERT INTO reading VALUES (?, ?, ?), (?, ?, ?)" in printed
    assert "cascadb mdc: session" in printed  # psql's connection, by its account
    assert "m-9" not in printed
    # the rows are sealed on the deployment's storage nodes
    stored = b"".join(p.read_bytes() for p in (directory / "kvs").rglob("*") if p.is_file())
    assert stored
    assert b"m-9" not in stored


def test_serve_takes_the_idle_in_transaction_timeout_from_the_file_the_variable_or_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterseal.cascadb import service

    seen: list[float | None] = []

    async def serve(options: service.CascadbOptions, **_: object) -> None:
        seen.append(options.idle_in_transaction_timeout)

    monkeypatch.setattr(service, "serve_cascadb", serve)
    config = tmp_path / "meterseal.toml"
    config.write_text("[cascadb]\nidle_in_transaction_timeout = 7.5\n")
    command = ["cascadb", "serve", "--cas", "http://127.0.0.1:9", "--memory"]
    for args, env in [
        (command, {"MS_CONFIG": str(config)}),
        (command, {"MS_CONFIG": str(config), "MS_CASCADB_IDLE_IN_TRANSACTION_TIMEOUT": "2"}),
        ([*command, "--idle-in-transaction-timeout", "0"], {"MS_CONFIG": str(config)}),
        (command, {"MS_CONFIG": "none"}),
    ]:
        done = invoke(args, env=env)
        assert done.exit_code == 0, done.output
    assert seen == [7.5, 2.0, None, 60.0]  # 0: no limit
