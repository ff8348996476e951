"""`meterseal cascadb sql|serve` against a served KVS gateway (memory nodes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psycopg

from tests.command_line import invoke
from tests.kvs.gateway_fixtures import serve_gateway


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


def test_serve_speaks_postgresql_until_sigterm() -> None:
    with serve_gateway() as gateway:
        env = {**os.environ, "MS_KVS_KEY": gateway.keys["meters-rw"], "MS_CASCADB_PASSWORD": "pw"}
        command = [sys.executable, "-m", "meterseal", "cascadb", "serve", "--gateway", gateway.url,
                   "--bucket", "meters", "--listen", "127.0.0.1:0"]  # fmt: skip
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            assert line.startswith("cascadb: PostgreSQL protocol on 127.0.0.1:"), line
            port = int(line.split("127.0.0.1:")[1].split()[0])
            dsn = f"host=127.0.0.1 port={port} user=mdc password=pw sslmode=disable"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE TABLE m(id INT PRIMARY KEY, v TEXT)")
                conn.execute("INSERT INTO m VALUES (%s, %s)", (10, "ten"))
                assert conn.execute("SELECT v FROM m WHERE id = %s", (10,)).fetchone() == ("ten",)
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0
