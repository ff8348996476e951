"""`meterseal integrity …`: keys, trace, embed, verify, monitor, the audit log and reports."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DeploymentDir,
    PassphraseEnv,
    console,
    from_config,
    passphrase,
)
from meterseal.errors import MetersealError
from meterseal.integrity.errors import TracedRunFailed
from meterseal.integrity.platform_key import SOFTWARE_KEY_LABEL, PlatformKey
from meterseal.ui import progress_bar

if TYPE_CHECKING:
    from meterseal.integrity.tracer import Outcome

integrity_app = typer.Typer(
    help="Meter software integrity: behaviour traces embedded in the program, a run-time monitor.",
    no_args_is_help=True,
)

DEFAULT_KEYS = Path("var/integrity")
KeyDir = Annotated[
    Path, typer.Option("--key-dir", help=f"platform key directory ({SOFTWARE_KEY_LABEL})")
]
LogPath = Annotated[Path, typer.Option("--log", help="security audit log file")]
Command = Annotated[list[str], typer.Argument(help="BINARY [-- ARGS…]")]
MALICIOUS_EXIT = 3


def _binary(command: list[str]) -> list[str]:
    if not command:
        raise typer.BadParameter("name the program: BINARY [-- ARGS…]")
    return [os.path.abspath(command[0]), *command[1:]]


@integrity_app.command("keygen")
def keygen(
    key_dir: KeyDir = DEFAULT_KEYS,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Create the platform key that signs DSig and the audit log (a software key: no TPM here)."""
    private, public = PlatformKey.generate().save(key_dir, passphrase(passphrase_env))
    console.print(f"{SOFTWARE_KEY_LABEL}: private {private} (0600)", soft_wrap=True)
    console.print(f"public {public}", soft_wrap=True)  # paths whole: they are copied


@integrity_app.command("build")
def build(
    out: Path,
    variant: Annotated[
        str | None, typer.Option(help="attack variant: open, shell, energy, connect, execmem")
    ] = None,
) -> None:
    """Compile the meter program (or an attack variant) with gcc."""
    from meterseal.integrity.build import build_meter

    path = build_meter(out, variant)
    console.print(f"built {path}" + (f" (variant {variant})" if variant else ""))


def _failed_run(program: str, outcome: Outcome, run: int, runs: int, out: Path) -> str:
    """Why a trusted run records no trace: how it ended, and that --out was left alone."""
    if outcome.timed_out:
        how = "did not finish in time"
    elif outcome.exit_code is None:
        how = f"was ended by signal {outcome.signal}"
    else:
        how = f"exited with status {outcome.exit_code}"
    return (
        f"{os.path.basename(program)} {how} in trusted run {run} of {runs} (its own message, "
        f"if any, is above): no trace written, "
        f"{out} left as it was (a trace records only runs that end normally; for the example "
        "meter, `meterseal integrity example` writes the sensor.txt and regs/ its command "
        "line names)"
    )


@integrity_app.command("example")
def example(
    directory: Annotated[Path, typer.Argument(help="where to write sensor.txt and regs/")] = Path(
        "."
    ),
) -> None:
    """Write the example meter's inputs: a sensor source (sensor.txt) and registers (regs/)."""
    from meterseal.integrity.build import write_example_inputs

    sensor, registers, written = write_example_inputs(directory)
    lines = len(sensor.read_text().splitlines())
    state = "wrote" if written else "kept the existing"
    console.print(f"{state} {sensor} ({lines} sensor values in watts, one per interval)")
    console.print(f"register directory {registers} (the meter keeps display.reg and energy.reg)")
    console.print(
        "next: meterseal integrity trace --runs 2 -- ./meter "
        f"{sensor} {registers} 127.0.0.1:7500 0 25 10"
    )


@integrity_app.command("trace")
def trace(
    command: Command,
    out: Annotated[Path, typer.Option(help="trace model file (CBOR)")] = Path("trace.cbor"),
    runs: Annotated[int, typer.Option(help="trusted runs to record")] = 1,
    window: Annotated[int, typer.Option(help="behaviours per call window")] = 3,
    merge: Annotated[bool, typer.Option(help="add to the model already in --out")] = False,
) -> None:
    """Offline phase: run BINARY ARGS under the tracer and record its behaviour traces."""
    from meterseal.integrity.recording import record_run
    from meterseal.integrity.trace import TraceModel, TraceRecorder

    argv = _binary(command)
    try:
        earlier = TraceModel.from_cbor(out.read_bytes()) if merge and out.exists() else None
        recorder = TraceRecorder(os.path.basename(argv[0]), window=window)
        with progress_bar(console) as bar:
            task = bar.add_task(f"tracing {os.path.basename(argv[0])}", total=runs)
            for run in range(1, runs + 1):
                outcome = record_run(recorder, argv)
                if outcome.exit_code != 0:
                    raise TracedRunFailed(_failed_run(argv[0], outcome, run, runs, out))
                bar.advance(task)
        model = recorder.model(earlier)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    out.write_bytes(model.to_cbor())
    table = Table(title=f"behaviour traces of {model.program} ({model.runs} runs) -> {out}")
    for column in ("function", "action", "object"):
        table.add_column(column)
    for name, function in model.functions.items():
        for action, obj in sorted(function.allowed):
            table.add_row(name, action, obj)
    console.print(table)


@integrity_app.command("embed")
def embed(
    binary: Path,
    trace_file: Annotated[Path, typer.Option("--trace", help="trace model file")] = Path(
        "trace.cbor"
    ),
    key_dir: KeyDir = DEFAULT_KEYS,
    out: Annotated[Path | None, typer.Option(help="output file (default: in place)")] = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Offline phase: embed HV, the trace and DSig into BINARY as a read-only ELF section."""
    from meterseal.integrity.embed import embed as do_embed
    from meterseal.integrity.trace import TraceModel

    try:
        key = PlatformKey.load(key_dir, passphrase(passphrase_env))
        result = do_embed(binary, TraceModel.from_cbor(trace_file.read_bytes()), key, out)
    except OSError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(
        f"embedded into {result.path}: HV {result.hv.hex()}, section {result.section_size} "
        f"bytes, DSig by {key.label}"
    )


@integrity_app.command("verify")
def verify(binary: Path, key_dir: KeyDir = DEFAULT_KEYS) -> None:
    """Static check of a program file: extract the section, check DSig and HV (exit 1 if not)."""
    from meterseal.integrity.embed import measure_file

    try:
        section, new_hv = measure_file(binary.read_bytes(), PlatformKey.load_public(key_dir))
    except OSError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except MetersealError as exc:
        console.print(f"[red]untrusted:[/red] {exc.diagnostics()}")
        raise typer.Exit(code=1) from exc
    if new_hv != section.hv:
        console.print(f"[red]untrusted:[/red] HV {section.hv.hex()} but the file is {new_hv.hex()}")
        raise typer.Exit(code=1)
    console.print(
        f"trusted: HV {new_hv.hex()}, {section.trace.behaviour_count} behaviours in "
        f"{len(section.trace.functions)} functions, DSig by {section.signer}"
    )


@integrity_app.command("monitor")
def monitor(
    ctx: typer.Context,
    command: Command,
    key_dir: KeyDir = DEFAULT_KEYS,
    log: LogPath = DEFAULT_KEYS / "audit.log",
    period: Annotated[
        float, typer.Option(help="seconds between periodic measurements (0: behaviours only)")
    ] = 1.0,
    meter: Annotated[str | None, typer.Option(help="meter id whose key signs reports")] = None,
    fleet: Annotated[Path | None, typer.Option(help="fleet file holding that meter key")] = None,
    report_out: Annotated[
        Path | None, typer.Option(help="write the latest signed integrity report here")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="submit reports to this head-end store URL")
    ] = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Run time: start BINARY ARGS and watch it; kill it when it is judged malicious (exit 3)."""
    from meterseal.integrity.auditlog import AuditLog
    from meterseal.integrity.monitor import Monitor
    from meterseal.integrity.reporting import Reporter

    argv = _binary(command)
    if meter is None and fleet is None and from_config(ctx, "store"):
        store = None  # meterseal.toml's store: reports go there only when a meter key is named
    secret = passphrase(passphrase_env)
    key = PlatformKey.load(key_dir, secret)
    audit = AuditLog(log, key)
    reporter = Reporter.configure(
        meter, fleet, report_out, store, deployment_dir, audit, os.path.basename(argv[0]), secret
    )
    try:
        result = Monitor(argv, key, audit, period=period, on_verdict=reporter).run()
    finally:
        audit.close()
    if not result.measurements:
        console.print(
            f"[red]error:[/red] {argv[0]} did not start (exit {result.outcome.exit_code})"
        )
        raise typer.Exit(code=2)
    bad = result.malicious
    if bad is not None:
        console.print(f"[red]malicious, killed:[/red] {bad.reason}")
        raise typer.Exit(code=MALICIOUS_EXIT)
    outcome = result.outcome
    console.print(
        f"trusted: {len(result.measurements)} measurements, {outcome.trapped} trapped calls "
        f"({outcome.rechecked} re-checked by the native loop), audit log {log}"
    )
    # Trusted, yet the program may have stopped on its own error: say so (its exit status is
    # the command's), so that a failed meter is not read as a clean run.
    if outcome.exit_code is None:
        console.print(f"{argv[0]} was stopped by signal {outcome.signal}")
        raise typer.Exit(code=128 + (outcome.signal or 0))
    if outcome.exit_code != 0:
        console.print(
            f"{argv[0]} exited with status {outcome.exit_code} (its own message, if any, is above)"
        )
    raise typer.Exit(code=outcome.exit_code)


@integrity_app.command("log")
def show_log(
    log: LogPath = DEFAULT_KEYS / "audit.log",
    key_dir: KeyDir = DEFAULT_KEYS,
    since: Annotated[
        str | None, typer.Option(help="SIZE:ROOT of a head seen before: check the log grew from it")
    ] = None,
    last: Annotated[int, typer.Option(help="entries to show")] = 20,
) -> None:
    """Verify the security audit log (every signed head, and growth since a head) and show it."""
    from meterseal.integrity.auditlog import check_consistency, replay
    from meterseal.integrity.judgement import entry_fields

    try:
        contents = replay(log.read_bytes(), PlatformKey.load_public(key_dir))
        if since is not None:
            size, root = since.split(":", 1)
            check_consistency(contents, int(size), bytes.fromhex(root))
    except OSError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except ValueError as exc:
        raise typer.BadParameter(f"--since is SIZE:HEXROOT ({exc})") from exc
    table = Table(title=f"{log}: {len(contents.entries)} measurements")
    for column in ("#", "trigger", "function", "action", "object", "verdict", "reason"):
        table.add_column(column)
    start = max(0, len(contents.entries) - last)
    for i, entry in enumerate(contents.entries[start:], start=start):
        e = entry_fields(entry)
        table.add_row(
            str(i),
            e["trigger"],
            e["function"] or "",
            e["action"] or "",
            e["object"] or "",
            e["verdict"],
            e["reason"],
        )
    console.print(table)
    if contents.heads:
        head = contents.heads[-1]
        console.print(f"signed head: size {head.size} root {head.root.hex()} by {head.signer}")
    if contents.problems:
        for problem in contents.problems:
            console.print(f"[red]problem:[/red] {problem}")
        raise typer.Exit(code=1)


@integrity_app.command("report")
def report(
    report_file: Path,
    store: Annotated[str, typer.Option("--store", help="head-end store URL")],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Submit a signed integrity report to the head-end (refused unless the meter signed it)."""
    from meterseal.integrity.reporting import submit

    try:
        accepted = submit(store, deployment_dir, report_file.read_bytes(), dt.datetime.now(dt.UTC))
    except OSError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"meter {accepted.meter_id}: {accepted.verdict.value} ({accepted.reason})")


@integrity_app.command("status")
def status(store: Annotated[str, typer.Option("--store", help="head-end store URL")]) -> None:
    """Each meter's latest integrity verdict as the head-end holds it."""
    from meterseal.integrity.reporting import states

    rows = states(store)
    table = Table(title="meter integrity (malicious: readings quarantined as meter_integrity)")
    for column in ("meter", "verdict", "reason", "reported"):
        table.add_column(column)
    for s in rows:
        when = dt.datetime.fromtimestamp(s.issued_at_ms / 1000, dt.UTC).isoformat()
        table.add_row(s.meter_id, s.verdict, s.reason, when)
    console.print(table)
