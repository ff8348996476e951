"""The tables of `meterseal bench kvs`: Fig. 5, Fig. 6, the failure run and the codec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from meterseal.bench.kvs import FailureRow, KvsPlan, KvsResult, RateRow, run_measurements
from meterseal.bench.kvs_codec import TARGET
from meterseal.ui import TextTable, Verdict, print_table, print_written, progress_bar

PLOT_NAME = "bench-kvs.png"

CODEC_ROWS = (
    ("aes_encrypt", "AES-256-GCM encrypt alone (4 MiB chunks)"),
    ("encode", "pyeclib encode 6+2 alone"),
    ("aes_decrypt", "AES-256-GCM decrypt alone"),
    ("decode", "pyeclib decode from the 6 data fragments alone"),
    ("tags", "GMAC tag of every fragment alone (the store's blob check)"),
    ("store_put", "store put, ec:6+2 (seal, encode, tag, place)"),
    ("store_get", "store get, ec:6+2 (fetch, check tags, decode, open)"),
    ("gateway_put", "gateway process put over loopback HTTP, httpx client (GatewayClient)"),
    ("gateway_get", "gateway process get over loopback HTTP, httpx client (GatewayClient)"),
    ("stdlib_put", "gateway process put over loopback HTTP, http.client (stdlib)"),
    ("stdlib_get", "gateway process get over loopback HTTP, http.client (stdlib)"),
)


def size_text(size: int) -> str:
    """1 KiB, 256 KiB, 16 MiB, or bytes."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size:,} B"


def storage_table(result: KvsResult) -> TextTable:
    """Fig. 5: raw bytes on the nodes per policy and size, against the prediction."""
    rows = [
        (
            r.policy,
            size_text(r.size),
            f"{r.held:,}",
            f"{r.held / r.size:.2f}x",
            f"{r.blobs}",
            f"{r.disk:,}",
            f"{r.predicted:,}",
        )
        for r in result.storage
    ]
    exact = all(r.held == r.predicted for r in result.storage)
    notes = (
        f"one object per cell into a store over {result.plan.nodes} local-directory nodes; "
        "held = bytes of the blob files the node directories gained (the catalog's sealed "
        "manifests not counted); on disk = their allocated blocks",
        "predicted = kvs.policy.raw_bytes: 16-byte AES-GCM tag per 4 MiB chunk, 80-byte "
        "liberasurecode header and padding per fragment",
    )
    return TextTable(
        "KVS Fig. 5: raw bytes the storage nodes hold per policy",
        ("policy", "object", "held by nodes", "x object", "blobs", "on disk", "predicted"),
        rows,
        notes,
        Verdict("the nodes hold exactly the predicted bytes (raw_bytes)", exact),
    )


@dataclass(frozen=True)
class Where:
    """The storage a Fig. 6 table and a failure table describe, and their rows."""

    title: str  # appended to the tables' titles
    policies: tuple[str, ...]
    rates: list[RateRow]
    failures: list[FailureRow]
    nodes: str  # what the nodes are
    kill: str  # how a node is killed and replaced


def local_where(result: KvsResult) -> Where:
    """The local-directory nodes."""
    plan = result.plan
    return Where(
        "",
        plan.policies,
        result.rates,
        result.failures,
        f"{plan.nodes} local-directory nodes (fsync per blob) and catalog",
        "node-0's directory taken away (a dead node), then given back empty (a new disk)",
    )


def nats_where(result: KvsResult) -> Where | None:
    """The local NATS cluster, when it ran."""
    found = result.nats
    if found is None:
        return None
    from meterseal.bench.kvs_nats import POLICIES, VICTIM

    return Where(
        " on a local NATS cluster",
        POLICIES,
        found.rates,
        found.failures,
        f"{found.servers} nats-server processes (a stream pinned to each, a replica set R=3, "
        "the catalog R=3)",
        f"server {VICTIM} killed (SIGKILL), then restarted on an empty store (a new disk)",
    )


def rate_table(result: KvsResult, where: Where) -> TextTable:
    """Fig. 6: operations per second by object size, puts and gets per policy."""
    plan = result.plan
    cells = {(r.policy, r.size, r.op): r for r in where.rates}
    headers = ["object"] + [f"{p} {op}/s" for p in where.policies for op in ("put", "get")]
    rows = []
    for size in plan.sizes:
        row = [size_text(size)]
        for policy in where.policies:
            for op in ("put", "get"):
                r = cells[(policy, size, op)]
                mib = r.per_second * size / (1 << 20)
                row.append(f"{r.per_second:,.1f} ({mib:,.1f} MiB/s)")
        rows.append(tuple(row))
    errors = sum(r.errors for r in where.rates)
    failed = next((r for r in where.rates if r.error), None)
    notes = [
        f"{plan.clients} client processes, each with its own store engine over the same "
        f"{where.nodes}; {plan.seconds:g} s window per cell; gets read objects the clients "
        "wrote (page cache warm)",
        f"operations failed: {errors}"
        + (f" (first: {failed.policy} {size_text(failed.size)} {failed.op}: {failed.error})"
           if failed else ""),
        f"{result.machine.cpu}, {result.machine.cpus} logical CPUs, {result.machine.python}",
    ]  # fmt: skip
    return TextTable(
        f"KVS Fig. 6: operations per second by object size ({plan.clients} clients)"
        + where.title,
        tuple(headers),
        rows,
        tuple(notes),
        Verdict("reference figures: the paper's Fig. 6 on this machine; no failed operation",
                None if errors == 0 else False),
    )  # fmt: skip


def failure_table(result: KvsResult, where: Where) -> TextTable:
    """The failure run: reads and a write with a node dead, then the repair."""
    rows = [
        (
            r.policy,
            f"{r.reads_ok}/{r.objects}",
            f"{r.healthy_read * 1000 / r.objects:,.1f} ms",
            f"{r.degraded_read * 1000 / r.objects:,.1f} ms",
            "ok" if r.write_error is None else f"refused: {r.write_error}",
            f"{r.repair_seconds:,.2f} s",
            f"{r.rebuilt:,}",
            "yes" if r.healthy_after else "no",
        )
        for r in where.failures
    ]
    met = all(r.reads_ok == r.objects and r.healthy_after for r in where.failures)
    plan = result.plan
    notes = (
        f"{plan.failure_objects} objects of {size_text(plan.failure_size)} per policy on "
        f"{where.nodes}; {where.kill}; then `scrub --repair` run",
    )
    return TextTable(
        "KVS failure run: one node killed, then replaced and repaired" + where.title,
        (
            "policy",
            "reads ok, node dead",
            "read per object, healthy",
            "read per object, node dead",
            "write, node dead",
            "repair",
            "blobs rebuilt",
            "every blob intact after",
        ),
        rows,
        notes,
        Verdict("every read succeeds with one node dead; the repair restores every blob", met),
    )


def codec_table(result: KvsResult) -> TextTable:
    """Put and get of the codec size against AES-GCM and pyeclib alone."""
    codec = result.codec
    size = codec.size
    rows = []
    for key, label in CODEC_ROWS:
        t = codec.timings[key]
        rows.append(
            (label, f"{t.median * 1000:,.1f} ms", f"{size / t.median / (1 << 20):,.0f} MiB/s")
        )
    vias = {"store": "store", "gateway": "gateway (httpx)", "stdlib": "gateway (http.client)"}
    for via, name in vias.items():
        for op in ("put", "get"):
            rows.append(
                (
                    f"{name} {op} / primitives alone",
                    f"{codec.ratio(op, via):.2f}x",
                    f"bound {codec.bound(op) * 1000:,.1f} ms",
                )
            )
    m = result.machine
    notes = (
        f"{size_text(size)} object, in-memory nodes (no disk): what the store engine, and the "
        "gateway with its HTTP, add to the primitives; the gateway in its own process (as "
        "deployed), the clients, the store engine and the primitives in the bench process; "
        "runs interleaved, medians; bound = AES-GCM + pyeclib alone; the verdict takes the "
        "faster client",
        f"erasure backend {result.backend}; {m.cpu}, {m.cpus} logical CPUs, {m.python}, "
        f"cryptography {m.cryptography} ({m.openssl}); load average "
        + " / ".join(f"{x:.2f}" for x in m.load),
    )
    target = (
        f"the gateway's put and get of a {size_text(size)} object within {TARGET:g}x of "
        "AES-GCM plus erasure coding alone"
    )
    return TextTable(
        f"KVS codec: {size_text(size)} through the gateway and the store against its primitives",
        ("operation", "time", "throughput"),
        rows,
        notes,
        Verdict(target, codec.met),
    )


def tables(result: KvsResult) -> list[TextTable]:
    """Every table of the run, in print order."""
    local = local_where(result)
    out = [storage_table(result), rate_table(result, local), failure_table(result, local)]
    if (nats := nats_where(result)) is not None:
        out += [rate_table(result, nats), failure_table(result, nats)]
    return [*out, codec_table(result)]


def run_bench(
    console: Console, plan: KvsPlan, out_dir: Path, work: Path | None = None
) -> KvsResult:
    """Measure, print every table, write the plot; the result (verdicts in its tables)."""
    from meterseal.bench.kvs_plot import plot_kvs

    with progress_bar(console) as bar:
        task = bar.add_task("bench kvs", total=plan.steps())

        def step(what: str) -> None:
            bar.update(task, advance=1, description=what)

        result = run_measurements(plan, work, step)
    if plan.nats and result.nats is None:
        console.print("[yellow]no nats-server found: the NATS runs were skipped[/yellow]")
    for table in tables(result):
        print_table(console, table)
    print_written(console, "plot", plot_kvs(result, out_dir / PLOT_NAME))
    return result


def correct(result: KvsResult) -> bool:
    """The verdicts about correctness (bytes as predicted, no failed operation, repair)."""
    checked = tables(result)[:-1]  # the codec's verdict is about speed
    return all(t.verdict is None or t.verdict.met is not False for t in checked)
