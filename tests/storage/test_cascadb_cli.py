"""`meterseal init --store cascadb:///DIR` and `meterseal serve`: the head-end on CascaDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from meterseal.storage import LATEST_VERSION, Store, current_version
from meterseal.storage.cascadb_store import close_embedded

ROOT = Path(__file__).resolve().parents[2]


def test_serve_opens_and_migrates_the_cascadb_store_the_configuration_names(
    tmp_path: Path,
) -> None:
    deployment, store_dir = tmp_path / "north", tmp_path / "cascadb"
    url = f"cascadb:///{store_dir}"  # cascadb:////tmp/…: an absolute path
    init = [sys.executable, "-m", "meterseal", "init", str(deployment)]
    init += ["--store", url, "--no-dissemination"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(init, check=True, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert f'url = "{url}"' in (deployment / "meterseal.toml").read_text()
    env["MS_CONFIG"] = str(deployment / "meterseal.toml")
    command = [sys.executable, "-m", "meterseal", "serve", "--tcp", "127.0.0.1:0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("head-end ready"):
            break
    process.send_signal(signal.SIGTERM)
    seen.extend(process.stdout)
    assert process.wait() == 0, "".join(seen)
    assert {p.name for p in store_dir.iterdir()} >= {"node-0", "catalog", "master.key", "lock"}
    try:
        with Store(url) as store, store.connection() as connection:
            assert current_version(connection) == LATEST_VERSION
    finally:
        close_embedded(store_dir)
