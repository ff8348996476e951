"""bench kvs --quick: every table has its shape, the plot is drawn (times never asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterseal.bench.kvs import QUICK
from meterseal.bench.kvs_report import storage_table
from tests.command_line import invoke
from tests.nats_cluster import require_nats_cluster

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_quick_bench_prints_every_table_and_draws_the_plot(tmp_path: Path) -> None:
    result = invoke(
        [
            "bench",
            "kvs",
            "--quick",
            "--work",
            str(tmp_path / "work" / "new"),
            "--out",
            str(tmp_path / "plots"),
        ]
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "**KVS Fig. 5: raw bytes the storage nodes hold per policy**" in text
    assert "- PASS: the nodes hold exactly the predicted bytes (raw_bytes)" in text
    for policy in QUICK.policies:
        assert f"| {policy} | 1 KiB |" in text
    fig6 = "| object | rep:3 put/s | rep:3 get/s | ec:6+2 put/s | ec:6+2 get/s |"
    assert fig6 in text
    assert "| 256 KiB |" in text
    assert "operations failed: 0" in text
    assert "**KVS failure run: one node killed, then replaced and repaired**" in text
    for policy in QUICK.policies:
        assert f"| {policy} | 3/3 |" in text
    assert "- PASS: every read succeeds with one node dead; the repair restores every blob" in text
    assert "| store put / primitives alone |" in text
    assert "| gateway (httpx) get / primitives alone |" in text
    assert "| gateway (http.client) put / primitives alone |" in text
    assert "the gateway's put and get of a 1 MiB object within 2x of AES-GCM" in text
    assert (tmp_path / "plots" / "bench-kvs.png").read_bytes().startswith(PNG_SIGNATURE)
    assert list(tmp_path.glob("meterseal-bench-kvs-*")) == []  # the nodes' files removed


@pytest.mark.slow
@pytest.mark.services
def test_quick_bench_on_a_nats_cluster(tmp_path: Path) -> None:
    require_nats_cluster()
    args = ["bench", "kvs", "--quick", "--nats", "--work", str(tmp_path)]
    result = invoke([*args, "--out", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    text = result.output
    title = "**KVS Fig. 6: operations per second by object size (2 clients) on a local NATS"
    assert title in text
    assert "| object | rep:3 put/s | rep:3 get/s | ec:3+2 put/s |" in text
    assert "KVS failure run: one node killed, then replaced and repaired on a local NATS" in text
    for policy in ("rep:3", "ec:3+2", "hybrid:2+2"):
        assert f"| {policy} | 3/3 |" in text
    # five servers: erasure-coded writes need all five, replication keeps writing
    assert "needs 5 healthy nodes; 4 of 5 are healthy (down: n1)" in text
    assert text.count("- PASS: every read succeeds with one node dead") == 2


def test_a_miscounted_node_fails_the_storage_verdict() -> None:
    from dataclasses import replace

    from meterseal.bench.kvs import KvsResult, StorageRow
    from meterseal.bench.kvs_codec import CodecResult
    from meterseal.bench.timing import Machine

    row = StorageRow("rep:3", 1024, 3120, 12288, 3, 3120)
    result = KvsResult(QUICK, [row, replace(row, held=3000)], [], [], CodecResult(1, {}),
                       Machine.probe(None))  # fmt: skip
    verdict = storage_table(result).verdict
    assert verdict is not None
    assert verdict.met is False
