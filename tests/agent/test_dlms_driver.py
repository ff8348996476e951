"""The DLMS/COSEM driver against emulated meters, over the wrapper and HDLC: reads, acts, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from meterseal.agent.dlms_driver import DlmsDriver, DlmsSecrets, open_dlms
from meterseal.agent.dlms_emulator import DlmsFault, DlmsMeterLine, Transport
from meterseal.agent.dlms_keys import load_dlms_keys, save_dlms_keys
from meterseal.agent.dlms_meter import DlmsMeterApp
from meterseal.agent.driver import LoadState, MeterDriver, MeterTarget
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.errors import (
    KeyFileError,
    MeterDriverError,
    MeterFrameError,
    MeterTimeout,
    MeterUnsupported,
    PartialFrame,
    WrongMeterSerial,
)
from meterseal.meter.load import INTERVAL, Fleet
from tests.conftest import NOW

T = int(NOW.timestamp())
PASSWORD = b"12345678"
R = TypeVar("R")


def _meter(index: int = 0) -> EmulatedMeter:
    return EmulatedMeter(f"{30_000_001 + index}", index, Fleet(7), lambda: T)


def _with_driver(
    meter: EmulatedMeter,
    transport: Transport,
    use: Callable[[DlmsDriver], Awaitable[R]],
    faults: frozenset[DlmsFault] = frozenset(),
    timeout: float = 3.0,
) -> R:
    async def run() -> R:
        line = DlmsMeterLine(DlmsMeterApp(meter, PASSWORD), transport, faults)
        host, port = await line.start()
        target = MeterTarget(f"{host}:{port}", meter.serial, timeout=timeout)
        try:
            driver = await open_dlms(
                target, DlmsSecrets(PASSWORD), hdlc=transport is Transport.HDLC
            )
            try:
                return await use(driver)
            finally:
                await driver.close()
        finally:
            await line.stop()

    return asyncio.run(run())


@pytest.mark.parametrize("transport", list(Transport))
def test_the_driver_reads_what_the_meter_holds(transport: Transport) -> None:
    meter = _meter()
    end = T - T % INTERVAL
    start = end - 86_400

    async def read(driver: DlmsDriver) -> None:
        assert isinstance(driver, MeterDriver)
        assert (await driver.identify()).serial == meter.serial
        registers = await driver.read_registers()
        assert registers.active_import_wh == meter.register_wh(T)
        assert registers.read_at == T
        profile = await driver.read_load_profile(start, end)
        assert [i.start for i in profile.intervals] == list(range(start, end, INTERVAL))
        assert [i.active_import_wh for i in profile.intervals] == meter.energy(start, end)
        values = await driver.read_instantaneous()
        assert 45 < values.frequency < 55
        assert values.phasor().phases[0].voltage > 200

    _with_driver(meter, transport, read)


@pytest.mark.parametrize("transport", list(Transport))
def test_the_load_relay_and_the_clock_are_set(transport: Transport) -> None:
    meter = _meter(2)

    async def act(driver: DlmsDriver) -> None:
        assert await driver.set_load(LoadState.DISCONNECTED) is LoadState.DISCONNECTED
        assert meter.load_connected is False
        end = T - T % INTERVAL
        profile = await driver.read_load_profile(end - INTERVAL, end)
        assert profile.intervals[0].flags == frozenset({"supply cut off"})
        assert await driver.set_load(LoadState.CONNECTED) is LoadState.CONNECTED
        assert meter.load_connected is True
        assert await driver.set_clock(T + 120) == T + 120
        assert int(meter.now()) == T + 120

    _with_driver(meter, transport, act)


@pytest.mark.parametrize(
    ("transport", "fault", "error", "skip"),
    [
        (Transport.WRAPPER, DlmsFault.TIMEOUT, MeterTimeout, "timeout"),
        (Transport.HDLC, DlmsFault.TIMEOUT, MeterTimeout, "timeout"),
        (Transport.WRAPPER, DlmsFault.WRONG_FRAME, MeterFrameError, "bad_frame"),
        (Transport.HDLC, DlmsFault.WRONG_FRAME, MeterFrameError, "bad_frame"),
        (Transport.WRAPPER, DlmsFault.PARTIAL, PartialFrame, "partial_frame"),
        (Transport.HDLC, DlmsFault.PARTIAL, PartialFrame, "partial_frame"),
        (Transport.WRAPPER, DlmsFault.FOREIGN, WrongMeterSerial, "wrong_serial"),
        (Transport.HDLC, DlmsFault.FOREIGN, WrongMeterSerial, "wrong_serial"),
    ],
)
def test_each_fault_raises_its_driver_error(
    transport: Transport, fault: DlmsFault, error: type[MeterDriverError], skip: str
) -> None:
    async def read(driver: DlmsDriver) -> None:
        with pytest.raises(error) as caught:
            await driver.identify()
        assert caught.value.skip == skip

    _with_driver(_meter(4), transport, read, frozenset({fault}), timeout=0.3)


def test_a_wrong_password_is_refused_and_a_missing_meter_is_a_timeout() -> None:
    async def run() -> None:
        line = DlmsMeterLine(
            DlmsMeterApp(_meter(), PASSWORD), faults=frozenset({DlmsFault.BAD_PASSWORD})
        )
        host, port = await line.start()
        target = MeterTarget(f"{host}:{port}", "30000001", timeout=1.0)
        with pytest.raises(MeterUnsupported, match="refused"):
            await open_dlms(target, DlmsSecrets(PASSWORD))
        assert line.app.counts == {"association refused": 1}
        await line.stop()
        with pytest.raises(MeterTimeout):
            await open_dlms(target, DlmsSecrets(PASSWORD))

    asyncio.run(run())


def test_dlms_keys_are_kept_like_meter_keys(tmp_path: Path) -> None:
    path = tmp_path / "dlms-keys.cbor"
    keys = {"30000001": DlmsSecrets(b"one"), "30000002": DlmsSecrets(b"two")}
    save_dlms_keys(path, keys, b"passphrase")
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"one" not in path.read_bytes()
    assert load_dlms_keys(path, b"passphrase") == keys
    with pytest.raises(KeyFileError):
        load_dlms_keys(path, None)
