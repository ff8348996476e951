"""`meterseal command …`: sign commands for meters, list the command log, check it.

`send` issues a command with the operator command key (`command.key.pem`, made by
`keygen`), logs it and writes the signed command to the outbox for the agent (or, with
`--dlms`, has an agent in this process carry it out on a DLMS meter and logs its result). `log`
lists the commands and their states; `verify-log` checks a log with public material only,
as the metrology authority or a customer does.
"""

from __future__ import annotations

import datetime as dt
import getpass
import time
from pathlib import Path
from typing import Annotated, cast

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DeploymentDir,
    PassphraseEnv,
    console,
    passphrase,
    show_key_warnings,
)
from meterseal.commands.desk import CommandDesk, outbox_name
from meterseal.commands.logfile import CommandLogFile
from meterseal.commands.model import Action
from meterseal.commands.verify import Signer
from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import ConfigurationError, MetersealError

command_app = typer.Typer(
    help="Signed commands to meters (connect, disconnect, set clock, read) and their log.",
    no_args_is_help=True,
)
LogPath = Annotated[
    Path | None, typer.Option("--log", help="command log file (default: DEPLOYMENT/commands.log)")
]


def _log_path(log: Path | None, deployment_dir: Path) -> Path:
    return log if log is not None else deployment_dir / "commands.log"


def _recovered(log: CommandLogFile) -> CommandLogFile:
    """The head-end's log with a crash's torn tail recovered, and said (logfile.recover)."""
    torn = log.recover()
    if torn is not None:
        console.print(
            f"[yellow]recovered[/yellow] {log.path}: {torn}; its octets are in "
            f"{log.path.name}.torn-{torn.offset}, every complete entry kept",
            soft_wrap=True,
            highlight=False,
        )
    return log


@command_app.command("keygen")
def keygen(
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Make the operator command key (command.key.pem, command.pub.pem) if it is missing."""
    from meterseal.commands.keys import COMMAND_PUB, ensure_operator_key

    show_key_warnings()
    if not deployment_dir.is_dir():
        raise ConfigurationError(f"no deployment directory {deployment_dir}")
    key, made = ensure_operator_key(deployment_dir, passphrase(passphrase_env))
    what = "made" if made else "kept"
    console.print(
        f"operator command key {key.kid.hex()} {what}; agents trust {deployment_dir / COMMAND_PUB}",
        soft_wrap=True,
        highlight=False,
    )


@command_app.command("send")
def send(
    meter: Annotated[str, typer.Argument(help="meter id")],
    action: Annotated[Action, typer.Argument(help="connect, disconnect, set-clock or read")],
    clock: Annotated[
        str | None, typer.Option(help="set-clock: the time to set (ISO 8601; default: now)")
    ] = None,
    ttl: Annotated[int, typer.Option(min=1, help="seconds until the command expires")] = 900,
    outbox: Annotated[
        Path | None, typer.Option(help="where to write the signed command (DEPLOYMENT/outbox)")
    ] = None,
    dlms: Annotated[
        str | None,
        typer.Option(help="carry it out now on the DLMS meter at HOST:PORT (an agent in here)"),
    ] = None,
    serial: Annotated[str | None, typer.Option(help="with --dlms: the meter's serial")] = None,
    hdlc: Annotated[
        bool, typer.Option(help="with --dlms: HDLC on the line, not the wrapper")
    ] = False,
    fleet: Annotated[
        Path | None, typer.Option(help="with --dlms: fleet file with the meter's key")
    ] = None,
    by: Annotated[str | None, typer.Option(help="who sends it (default: the login name)")] = None,
    log: LogPath = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Sign and log a command for METER; print its id (METER#COUNTER).

    With --dlms an agent in this process verifies it, carries it out on the meter and logs the
    meter's signed result (the agent's counters: DEPLOYMENT/agent/command-counters.json).
    """
    from meterseal.commands.keys import load_operator_key

    show_key_warnings()
    secret = passphrase(passphrase_env)
    desk = CommandDesk(
        load_operator_key(deployment_dir, secret),
        _recovered(CommandLogFile(_log_path(log, deployment_dir))),
        outbox=None if dlms else (outbox if outbox is not None else deployment_dir / "outbox"),
    )
    argument = None
    if action is Action.SET_CLOCK:
        when = dt.datetime.fromisoformat(clock) if clock else dt.datetime.now(dt.UTC)
        argument = int(when.timestamp())
    elif clock is not None:
        raise typer.BadParameter("only set-clock takes --clock", param_hint="--clock")
    issued = desk.issue(meter, action, time.time(), ttl, argument, by or getpass.getuser())
    if dlms is not None:
        _carry_out(desk, issued.signed, meter, dlms, serial, hdlc, fleet, deployment_dir, secret)
        return
    path = desk.outbox / outbox_name(issued.command) if desk.outbox else None
    console.print(
        f"{issued.command.id} {action.value} issued (log entry {issued.entry.seq}), "
        f"expires {dt.datetime.fromtimestamp(issued.command.expires_at, dt.UTC):%H:%M:%S}Z: {path}",
        soft_wrap=True,
        highlight=False,
    )


def _carry_out(
    desk: CommandDesk,
    signed: bytes,
    meter_id: str,
    address: str,
    serial: str | None,
    hdlc: bool,
    fleet: Path | None,
    deployment_dir: Path,
    secret: bytes | None,
) -> None:
    """`send --dlms`: an agent in this process carries the command out; print the outcome."""
    import asyncio

    from meterseal.agent.dlms_commands import carry_out_here
    from meterseal.agent.dlms_keys import DLMS_KEYS, load_dlms_keys
    from meterseal.agent.driver import MeterTarget
    from meterseal.meter.provisioning import load_fleet

    if serial is None:
        raise typer.BadParameter("--dlms needs the meter's --serial", param_hint="--serial")
    secrets = load_dlms_keys(deployment_dir / DLMS_KEYS, secret).get(serial)
    if secrets is None:
        raise ConfigurationError(f"no DLMS secret for meter {serial} in {DLMS_KEYS}")
    keys = load_fleet(fleet or deployment_dir / "fleet-p256.cbor", secret)
    provisioned = next((m for m in keys if m.key.meter_id == meter_id), None)
    if provisioned is None:
        raise ConfigurationError(f"meter {meter_id} is not in the fleet file")
    carried = asyncio.run(
        carry_out_here(
            desk,
            signed,
            provisioned,
            MeterTarget(address, serial),
            secrets,
            deployment_dir / "agent" / "command-counters.json",
            hdlc=hdlc,
            now=int(time.time()),
        )
    )
    reason = f" ({carried.reason})" if carried.reason else ""
    ident = carried.command.id if carried.command is not None else meter_id
    console.print(f"{ident} {carried.outcome.value}{reason}", highlight=False, soft_wrap=True)


@command_app.command("record")
def record(
    results: Annotated[
        list[Path], typer.Argument(help="agents' signed result files, or directories of them")
    ],
    log: LogPath = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Log agents' signed results (files, or directories of them); recorded files are removed.

    `agent run --commands OUTBOX` leaves them in OUTBOX/results. The answer the log already
    holds (an agent that handed it over twice) is not logged again; a result of nothing, or
    a different second answer to a command, is refused and left in place (exit 1).
    """
    from meterseal.commands.keys import load_operator_key
    from meterseal.runtime.transitions import TransitionError

    desk = CommandDesk(
        load_operator_key(deployment_dir, passphrase(passphrase_env)),
        _recovered(CommandLogFile(_log_path(log, deployment_dir))),
    )
    files = [f for p in results for f in (sorted(p.glob("*.cose")) if p.is_dir() else [p])]
    refused = 0
    for path in files:
        try:
            recorded = desk.record(path.read_bytes(), time.time())
        except (MetersealError, TransitionError) as exc:
            refused += 1
            console.print(f"{path}: refused: {exc}", highlight=False, soft_wrap=True)
            continue
        path.unlink()  # only once the log holds its answer (appended and synced, or before)
        tracked = recorded.tracked
        reason = tracked.result.reason if tracked.result is not None else ""
        note = "" if recorded.appended else f"; {path.name}: {recorded.note}, not logged again"
        console.print(
            f"{tracked.command.id} {tracked.state.value}"
            + (f" ({reason})" if reason else "")
            + note,
            highlight=False,
            soft_wrap=True,
        )
    if refused:
        raise typer.Exit(code=1)


@command_app.command("log")
def show_log(
    meter: Annotated[str | None, typer.Option(help="only this meter's commands")] = None,
    log: LogPath = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """List the logged commands (id, action, state, reason) and the log's newest digest."""
    from meterseal.commands.keys import COMMAND_PUB, load_signers
    from meterseal.commands.log import check_log

    entries = _recovered(CommandLogFile(_log_path(log, deployment_dir))).entries()
    report = check_log(entries, load_signers([deployment_dir / COMMAND_PUB]), meter=meter)
    for tracked in report.commands.values():
        c, result = tracked.command, tracked.result
        reason = f" ({result.reason})" if result is not None and result.reason else ""
        values = (
            " " + ", ".join(f"{k}={v}" for k, v in result.values)
            if result is not None and result.values
            else ""
        )
        by = f" by {c.by}" if c.by else ""
        console.print(
            f"{c.id}  {c.action.value:<10} {tracked.state.value}{reason}{values}{by}",
            highlight=False,
        )
    _summary(report.entries, entries[-1].digest.hex() if entries else "-", report.problems)


def _summary(entries: int, newest: str, problems: list[str]) -> None:
    for problem in problems:
        console.print(f"[red]problem[/red]: {problem}", soft_wrap=True, highlight=False)
    console.print(f"{entries} entries, newest digest {newest}", highlight=False, soft_wrap=True)


@command_app.command("verify-log")
def verify_log(
    log_file: Annotated[Path, typer.Argument(metavar="LOG", help="a command log file")],
    operator_key: Annotated[
        list[Path] | None,
        typer.Option(
            help="a trusted operator public key (PEM; default DEPLOYMENT/command.pub.pem)"
        ),
    ] = None,
    meter: Annotated[str | None, typer.Option(help="check and list this meter's commands")] = None,
    meter_cert: Annotated[
        list[Path] | None,
        typer.Option(help="a meter certificate, to check that meter's signed results"),
    ] = None,
    ca: Annotated[Path | None, typer.Option(help="the CA of --meter-cert (DEPLOYMENT's)")] = None,
    digest: Annotated[
        str | None, typer.Option(help="the newest digest you were given: the log must reach it")
    ] = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Check a command log with public material only; exit 1 on any problem."""
    from meterseal.commands.keys import COMMAND_PUB, load_signers
    from meterseal.commands.log import check_log

    try:
        signers = load_signers(operator_key or [deployment_dir / COMMAND_PUB])
        meter_keys = _meter_keys(meter_cert or [], ca or deployment_dir / "ca.cert.pem")
        contents = CommandLogFile(log_file).read()  # a checker never changes what it checks
    except (MetersealError, OSError) as exc:
        why = exc.diagnostics() if isinstance(exc, MetersealError) else str(exc)
        console.print(f"[red]NOT VERIFIED[/red]: {why}", soft_wrap=True)
        raise typer.Exit(code=1) from exc
    entries = contents.entries
    report = check_log(entries, signers, meter_keys, meter)
    if contents.torn is not None:  # the complete entries are checked; the torn one is none
        report.problems.append(f"the log ends in {contents.torn}")
    newest = entries[-1].digest.hex() if entries else "-"
    if digest is not None and digest.lower() not in {e.digest.hex() for e in entries}:
        report.problems.append(f"the log does not reach digest {digest}: entries were removed")
    if not report.holds:
        _summary(report.entries, newest, report.problems)
        console.print("[red]NOT VERIFIED[/red]")
        raise typer.Exit(code=1)
    for tracked in report.commands.values():
        checked = "" if tracked.result is None or tracked.result_checked else " (result unchecked)"
        console.print(
            f"{tracked.command.id}  {tracked.command.action.value:<10} "
            f"{tracked.state.value}{checked}",
            highlight=False,
        )
    _summary(report.entries, newest, [])
    console.print(
        f"[green]verified[/green]: chain, operator signatures, counters and answers; "
        f"{report.unchecked_results} results without their meter's certificate",
        soft_wrap=True,
    )


def _meter_keys(certificates: list[Path], ca_path: Path) -> dict[str, Signer]:
    """Meter id -> Signer of each certificate issued by the CA, its suite read off its key."""
    from cryptography import x509

    from meterseal.crypto.certs import verify_meter_certificate
    from meterseal.crypto.suites import SUITES

    if not certificates:
        return {}
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    keys: dict[str, Signer] = {}
    for path in certificates:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        meter_id = verify_meter_certificate(certificate, ca)
        public = cast(VerifyingKey, certificate.public_key())
        suite = next((s for s in SUITES.values() if s.signature.accepts(public)), None)
        if suite is None:
            raise ConfigurationError(f"{path}: the key fits no suite")
        keys[meter_id] = Signer(suite.signature, public)
    return keys
