"""`meterseal agent`: read legacy meters and seal their readings; emulate NBR 14522 meters."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from meterseal.agent.spool import KEEP_SECONDS
from meterseal.cli_common import DEFAULT_DEPLOYMENT, DeploymentDir, PassphraseEnv, console
from meterseal.cli_common import load as load_deployment
from meterseal.cli_common import passphrase as read_passphrase
from meterseal.errors import ConfigurationError

if TYPE_CHECKING:
    from meterseal.agent.dlms_driver import DlmsSecrets
    from meterseal.agent.driver import DriverFactory
    from meterseal.agent.runner import AgentMeter

agent_app = typer.Typer(
    help="The meter-side sealing agent: legacy meter protocols in, sealed readings out.",
    no_args_is_help=True,
)

FAULT_HELP = (
    "faults of the last meters, comma-separated: bad_crc, flaky_crc, timeout, partial, foreign"
)


@agent_app.command("emulate")
def emulate(
    meters: Annotated[int, typer.Option(help="emulated NBR 14522 meters, one TCP port each")] = 4,
    prefix: Annotated[str, typer.Option(help="meter ids PREFIX-000001 ... (as provisioned)")] = (
        "MTR"
    ),
    serial_base: Annotated[int, typer.Option(help="serial number of the first meter")] = 20_000_001,
    seed: Annotated[int, typer.Option(help="the load model's seed (simulate uses 7)")] = 7,
    tz: Annotated[str, typer.Option(help="the meters' clock zone")] = "UTC",
    faults: Annotated[str, typer.Option(help=FAULT_HELP)] = "",
    host: Annotated[str, typer.Option(help="address the meters listen on")] = "127.0.0.1",
    write_meters: Annotated[
        Path | None, typer.Option(help="write the meter list `agent run --meters-file` reads")
    ] = None,
    duration: Annotated[float, typer.Option(help="seconds to run (0: until interrupted)")] = 0.0,
    sealed: Annotated[
        Path | None,
        typer.Option(help="speak the sealed, asynchronous variant; link keys in this directory"),
    ] = None,
    pty: Annotated[
        bool, typer.Option("--pty", help="each meter on a pseudo-terminal instead of a TCP port")
    ] = False,
) -> None:
    """Emulate NBR 14522 meters (registers and load profile from the load model) on TCP ports."""
    from meterseal.agent.emulation import emulated_header, serve_meter_list
    from meterseal.agent.link_keys import party
    from meterseal.agent.nbr_emulator import Emulator, Fault, MeterLine, TcpLine
    from meterseal.agent.nbr_meter import EmulatedMeter
    from meterseal.agent.nbr_sealed_link import SealedMeterLine
    from meterseal.agent.protocols import READER
    from meterseal.agent.targets import MeterLineEntry
    from meterseal.meter.load import Fleet
    from meterseal.meter.provisioning import meter_ids

    try:
        chosen = [Fault(f.strip()) for f in faults.split(",") if f.strip()]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from exc
    if pty and sealed is not None:
        raise typer.BadParameter("the sealed variant runs on TCP", param_hint="--pty")
    if len(chosen) > meters:
        raise typer.BadParameter("more faults than meters", param_hint="--faults")
    plan = [Fault.NONE] * (meters - len(chosen)) + chosen
    model = Fleet(seed)
    ids = meter_ids(meters, prefix)
    emulated = [
        EmulatedMeter(f"{serial_base + i:08d}", i, model, time.time, tz=tz) for i in range(meters)
    ]
    lines: list[TcpLine] = []
    for meter, fault in zip(emulated, plan, strict=True):
        if sealed is None:
            lines.append(MeterLine(meter=meter, fault=fault))
        else:
            reader = party(sealed, READER).peer()
            me = party(sealed, meter.serial)
            lines.append(SealedMeterLine(meter=meter, me=me, reader=reader, fault=fault))
    emulator = Emulator(lines)

    async def serve() -> None:
        if pty:
            places = [await line.start_pty() for line in emulator.lines]
        else:
            places = [f"{h}:{p}" for h, p in await emulator.start(host)]
        entries = [
            MeterLineEntry(meter_id, m.serial, place)
            for meter_id, m, place in zip(ids, emulated, places, strict=True)
        ]
        variant = "sealed NBR 14522" if sealed else "NBR 14522"
        await serve_meter_list(
            emulated_header(variant, seed),
            entries,
            [fault.value for fault in plan],
            write_meters,
            duration,
            emulator.stop,
        )

    asyncio.run(serve())
    for line, entry in zip(emulator.lines, ids, strict=True):
        counts = line.counts
        console.print(
            f"{entry} (emulated): {counts.commands} commands, {counts.blocks} blocks, "
            f"{counts.naks_heard} NAKs heard, {counts.commands_refused} commands refused"
        )


@agent_app.command("run")
def run(
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    protocol: Annotated[str, typer.Option(help="the meters' protocol")] = "nbr14522",
    address: Annotated[
        str | None, typer.Option(help="one meter's HOST:PORT, or its serial device's path")
    ] = None,
    serial: Annotated[str | None, typer.Option(help="its serial number")] = None,
    meter_id: Annotated[str | None, typer.Option(help="its meterseal meter id")] = None,
    meters_file: Annotated[
        Path | None, typer.Option(help="meter list: METER_ID SERIAL HOST:PORT a line")
    ] = None,
    fleet: Annotated[
        Path | None, typer.Option(help="fleet file with the meters' keys (default p256)")
    ] = None,
    transport: Annotated[str, typer.Option(help="to the head-end: tcp, http or mqtt")] = "tcp",
    target: Annotated[str, typer.Option(help="the head-end's address")] = "127.0.0.1:7400",
    first_day: Annotated[
        str | None, typer.Option("--from", help="first day to read (UTC, YYYY-MM-DD)")
    ] = None,
    days: Annotated[float, typer.Option(help="days of load profile to read")] = 1.0,
    tz: Annotated[str, typer.Option(help="the meters' clock zone")] = "UTC",
    timeout: Annotated[float, typer.Option(help="seconds a meter may take to answer")] = 5.0,
    attempts: Annotated[int, typer.Option(help="times a command is sent before giving up")] = 3,
    concurrency: Annotated[int, typer.Option(help="meters read at once")] = 16,
    wait: Annotated[float, typer.Option(help="seconds to wait for the head-end")] = 10.0,
    link_keys: Annotated[
        Path | None, typer.Option(help="link keys of nbr14522-sealed (agent emulate --sealed)")
    ] = None,
    dlms_keys: Annotated[
        Path | None, typer.Option(help="DLMS meters' secrets (default DEPLOYMENT/dlms-keys.cbor)")
    ] = None,
    commands: Annotated[
        Path | None,
        typer.Option(help="first carry out the signed commands waiting here (send's outbox)"),
    ] = None,
    spool: Annotated[
        Path | None,
        typer.Option(help="sealed readings kept to resend as they are (DEPLOYMENT/agent/spool)"),
    ] = None,
    spool_keep_seconds: Annotated[
        int,
        typer.Option(
            min=1,
            max=KEEP_SECONDS,
            help="seconds of intervals the spool keeps (at most the head-end's freshness window)",
        ),
    ] = KEEP_SECONDS,
    store: Annotated[
        str | None, typer.Option(help="the head-end's store, read for why it refused readings")
    ] = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Read meters over their protocol, seal their readings, send them to the head-end."""
    from meterseal.agent.driver import MeterTarget
    from meterseal.agent.protocols import driver_factory
    from meterseal.agent.report import loss_lines, spool_line
    from meterseal.agent.runner import AgentMeter, run_pass
    from meterseal.agent.spool import ReadingSpool
    from meterseal.agent.targets import MeterLineEntry, parse_meter_list
    from meterseal.meter.provisioning import load_fleet
    from meterseal.simulation import link_for, settle_store, simulation_period, wait_for_listener

    entries = parse_meter_list(meters_file.read_text().splitlines()) if meters_file else []
    single = (address, serial, meter_id)
    if any(single):
        if not all(single):
            raise typer.BadParameter("--address, --serial and --meter-id go together")
        entries.append(MeterLineEntry(meter_id or "", serial or "", address or ""))
    if not entries:
        raise typer.BadParameter("name meters with --meters-file or --address/--serial/--meter-id")
    try:
        day = None if first_day is None else dt.date.fromisoformat(first_day)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from") from exc
    start, intervals = simulation_period(day, days, dt.datetime.now(dt.UTC))
    end = start + intervals * 900
    deployment = load_deployment(deployment_dir, passphrase_env)
    passphrase = read_passphrase(passphrase_env)
    keys = {
        m.key.meter_id: m
        for m in load_fleet(fleet or deployment_dir / "fleet-p256.cbor", passphrase)
    }
    missing = [e.meter_id for e in entries if e.meter_id not in keys]
    if missing:
        raise ConfigurationError(f"not in the fleet file: {', '.join(missing)}")
    meters = [
        AgentMeter(MeterTarget(e.address, e.serial, timeout), keys[e.meter_id]) for e in entries
    ]
    factory = driver_factory(
        protocol,
        tz=tz,
        attempts=attempts,
        link_keys=link_keys,
        passphrase=passphrase,
        dlms_keys=_dlms_secrets(protocol, dlms_keys, deployment_dir, passphrase),
    )
    if commands is not None:  # signed commands first, through the verifier (agent.dlms_commands)
        _carry_out_commands(commands, meters, factory, deployment_dir)
    asyncio.run(wait_for_listener(transport, target, wait))
    before = _store_counts(store)
    link = link_for(transport, target, ca=deployment.ca_cert)
    result = asyncio.run(
        run_pass(
            meters,
            factory,
            link,
            deployment.headend.public(),
            start,
            end,
            concurrency=concurrency,
            spool=ReadingSpool(spool or deployment_dir / "agent" / "spool", spool_keep_seconds),
        )
    )
    table = Table(title=f"agent pass over {len(meters)} {protocol} meters")
    for column in ("meter", "serial", "readings", "register Wh", "skipped"):
        table.add_column(column)
    for outcome in sorted(result.meters, key=lambda o: o.meter_id):
        registers = outcome.registers
        table.add_row(
            outcome.meter_id,
            outcome.serial,
            str(outcome.readings),
            "" if registers is None else f"{registers.active_import_wh:,}",
            outcome.skipped or "",
        )
    console.print(table)
    report = result.report
    console.print(
        f"meters read {report.meters_read}, readings sealed {report.readings_sealed}"
        + (f" ({report.readings_resent} as spooled)" if report.readings_resent else "")
        + ", "
        f"accepted {report.acks['accepted']}, rejected {report.acks['rejected']}, "
        f"unacknowledged {report.unacknowledged} in {report.seconds:.1f} s"
    )
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())) or "none"
    console.print(f"skipped: {skipped}")
    unspooled = spool_line(report)
    if unspooled:
        console.print(unspooled, highlight=False)
    for outcome in result.meters:
        if outcome.skipped:
            console.print(f"  {outcome.meter_id} ({outcome.serial}): {outcome.detail}")
    refused = None
    if store is not None and before is not None:  # the ack carries no reason; the store does
        answered = report.acks["accepted"] + report.acks["rejected"]
        refused, _ = settle_store(store, before, answered, wait)
    lost = loss_lines(report, refused)
    if lost:  # a script must not take a pass whose readings were not stored for a done one
        for line in lost:
            console.print(line, highlight=False)
        raise typer.Exit(1)
    if start % 86_400 == 0 and intervals % 96 == 0:
        first = dt.datetime.fromtimestamp(start, dt.UTC).date()
        console.print(
            f"bill this period with: meterseal bill --from {first} --days {intervals // 96}"
        )


def _store_counts(url: str | None) -> Counter[str] | None:
    """The store's outcome counters before the pass (None: no store, or it cannot be read)."""
    if url is None:
        return None
    from meterseal.errors import MetersealError
    from meterseal.storage import Store

    try:
        with Store.open_read_only(url) as db:
            return Counter(db.counters())
    except MetersealError as exc:
        console.print(f"not reading the head-end's reasons from its store: {exc.diagnostics()}")
        return None


def _carry_out_commands(
    outbox: Path, meters: list[AgentMeter], factory: DriverFactory, deployment_dir: Path
) -> None:
    """Carry out the outbox's commands for `meters`; results in OUTBOX/results."""
    from meterseal.agent.dlms_commands import carry_out_outbox
    from meterseal.commands.keys import COMMAND_PUB, load_signers

    signers = load_signers([deployment_dir / COMMAND_PUB])
    counters = deployment_dir / "agent" / "command-counters.json"
    carried = asyncio.run(
        carry_out_outbox(outbox, meters, factory, signers, counters, int(time.time()))
    )
    for c in carried:
        what = c.command.id if c.command is not None else f"in {c.file}"
        reason = f" ({c.reason})" if c.reason else ""
        console.print(f"command {what}: {c.outcome.value}{reason}", highlight=False)


def _dlms_secrets(
    protocol: str, path: Path | None, deployment_dir: Path, passphrase: bytes | None
) -> dict[str, DlmsSecrets] | None:
    """The DLMS meters' secrets, for the DLMS protocols only (agent.dlms_keys)."""
    if not protocol.startswith("dlms"):
        return None
    from meterseal.agent.dlms_keys import DLMS_KEYS, load_dlms_keys

    return load_dlms_keys(path or deployment_dir / DLMS_KEYS, passphrase)


# DLMS/COSEM meters' emulator (agent.dlms_cli: the dlms extra's).
with contextlib.suppress(ModuleNotFoundError):
    from meterseal.agent.dlms_cli import emulate_dlms

    agent_app.command("emulate-dlms")(emulate_dlms)
