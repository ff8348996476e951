"""`meterseal agent emulate-dlms`: emulated DLMS/COSEM meters on TCP ports, with their secrets.

Each meter gets a random LLS password (with `--hls`, random HLS-GMAC keys as well, and it
ciphers every APDU); `--write-keys` keeps them (serial -> secret) in the
file `agent run --protocol dlms --dlms-keys` reads, under `MS_PASSPHRASE` like other keys.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meterseal.cli_common import PassphraseEnv, console
from meterseal.cli_common import passphrase as read_passphrase

if TYPE_CHECKING:
    from meterseal.agent.dlms_driver import DlmsSecrets

FAULT_HELP = "faults of the last meters: timeout, wrong_frame, partial, foreign, bad_password"


def emulate_dlms(
    meters: Annotated[int, typer.Option(help="emulated DLMS meters, one TCP port each")] = 4,
    prefix: Annotated[str, typer.Option(help="meter ids PREFIX-000001 ... (as provisioned)")] = (
        "MTR"
    ),
    serial_base: Annotated[int, typer.Option(help="serial number of the first meter")] = 30_000_001,
    seed: Annotated[int, typer.Option(help="the load model's seed (simulate uses 7)")] = 7,
    faults: Annotated[str, typer.Option(help=FAULT_HELP)] = "",
    hdlc: Annotated[bool, typer.Option(help="HDLC on the line instead of the IP wrapper")] = False,
    hls: Annotated[
        bool, typer.Option(help="HLS-GMAC with ciphered APDUs (random keys) instead of LLS")
    ] = False,
    host: Annotated[str, typer.Option(help="address the meters listen on")] = "127.0.0.1",
    write_meters: Annotated[
        Path | None, typer.Option(help="write the meter list `agent run --meters-file` reads")
    ] = None,
    write_keys: Annotated[
        Path | None, typer.Option(help="write the meters' DLMS secrets (dlms-keys.cbor)")
    ] = None,
    duration: Annotated[float, typer.Option(help="seconds to run (0: until interrupted)")] = 0.0,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Emulate DLMS/COSEM meters (registers, load profile from the load model) on TCP ports."""
    from meterseal.agent.dlms_driver import DlmsSecrets
    from meterseal.agent.dlms_emulator import DlmsEmulator, DlmsFault, DlmsMeterLine, Transport
    from meterseal.agent.dlms_keys import save_dlms_keys
    from meterseal.agent.dlms_meter import DlmsMeterApp
    from meterseal.agent.emulation import emulated_header, serve_meter_list
    from meterseal.agent.nbr_meter import EmulatedMeter
    from meterseal.agent.targets import MeterLineEntry
    from meterseal.meter.load import Fleet
    from meterseal.meter.provisioning import meter_ids

    try:
        chosen = [DlmsFault(f.strip()) for f in faults.split(",") if f.strip()]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from exc
    if len(chosen) > meters:
        raise typer.BadParameter("more faults than meters", param_hint="--faults")
    plan = [frozenset[DlmsFault]()] * (meters - len(chosen)) + [frozenset({f}) for f in chosen]
    model = Fleet(seed)
    emulated = [EmulatedMeter(f"{serial_base + i:08d}", i, model, time.time) for i in range(meters)]
    keys = {
        m.serial: DlmsSecrets(secrets.token_hex(8).encode(), *_gmac_keys(hls)) for m in emulated
    }
    if write_keys is not None:
        save_dlms_keys(write_keys, keys, read_passphrase(passphrase_env))
    transport = Transport.HDLC if hdlc else Transport.WRAPPER
    emulator = DlmsEmulator(
        [
            DlmsMeterLine(
                DlmsMeterApp(m, keys[m.serial].password, keys=_pair(keys[m.serial])),
                transport,
                fault,
            )
            for m, fault in zip(emulated, plan, strict=True)
        ]
    )

    async def serve() -> None:
        places = [f"{h}:{p}" for h, p in await emulator.start(host)]
        entries = [
            MeterLineEntry(meter_id, m.serial, place)
            for meter_id, m, place in zip(meter_ids(meters, prefix), emulated, places, strict=True)
        ]
        said = [",".join(sorted(f.value for f in fault)) or "none" for fault in plan]
        header = emulated_header("DLMS/COSEM", seed)
        await serve_meter_list(header, entries, said, write_meters, duration, emulator.stop)

    asyncio.run(serve())
    for line in emulator.lines:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(line.app.counts.items())) or "nothing"
        console.print(f"{line.app.meter.serial}: {counts}", highlight=False)


def _gmac_keys(hls: bool) -> tuple[bytes | None, bytes | None]:
    return (secrets.token_bytes(16), secrets.token_bytes(16)) if hls else (None, None)


def _pair(known: DlmsSecrets) -> tuple[bytes, bytes] | None:
    if known.encryption_key is None or known.authentication_key is None:
        return None
    return known.encryption_key, known.authentication_key
