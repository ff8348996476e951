"""The driver protocol's values and errors."""

from __future__ import annotations

import pytest

from meterseal.agent.driver import (
    InstantaneousValues,
    LoadProfile,
    MeterDriver,
    MeterIdentity,
    RegisterSnapshot,
)
from meterseal.agent.report import AgentReport
from meterseal.errors import (
    MeterDriverError,
    MeterFrameError,
    MetersealError,
    MeterTimeout,
    MeterUnsupported,
    ReadingError,
    WrongMeterSerial,
)
from meterseal.model import PhaseMeasurement


def test_instantaneous_values_become_a_phasor_report() -> None:
    phase = PhaseMeasurement(229.5, 4.2, 12.0, 940.0, 200.0)
    values = InstantaneousValues("12345678", 1_700_000_000, (phase,), 60.0, 0.97, 940.0)
    report = values.phasor()
    assert report.phases == (phase,)
    assert (report.frequency, report.power_factor, report.thd) == (60.0, 0.97, 0.0)


def test_instantaneous_values_are_validated_as_phasor_reports() -> None:
    phase = PhaseMeasurement(229.5, 4.2, 12.0, 940.0, 200.0)
    with pytest.raises(ReadingError):
        InstantaneousValues("1", 0, (phase,), 60.0, 1.5, 940.0).phasor()


def test_driver_errors_share_one_root_and_name_what_was_skipped() -> None:
    errors = [
        MeterTimeout("no answer"),
        MeterFrameError("bad CRC"),
        WrongMeterSerial("12345678", "87654321"),
        MeterUnsupported("no load profile"),
    ]
    assert all(isinstance(e, MeterDriverError) and isinstance(e, MetersealError) for e in errors)
    report = AgentReport()
    for error in [*errors, MeterTimeout("again")]:
        report.skip(error)
    assert report.skipped == {"timeout": 2, "bad_frame": 1, "wrong_serial": 1, "unsupported": 1}
    assert "87654321" in errors[2].diagnostics()


class _Fixed:
    async def identify(self) -> MeterIdentity:
        return MeterIdentity("1", "test")

    async def read_registers(self) -> RegisterSnapshot:
        return RegisterSnapshot("1", 0, 0)

    async def read_load_profile(self, start: int, end: int) -> LoadProfile:
        return LoadProfile("1", start, end, ())

    async def read_instantaneous(self) -> InstantaneousValues:
        raise MeterUnsupported("none")

    async def close(self) -> None:
        return None


def test_a_class_with_the_calls_is_a_driver() -> None:
    assert isinstance(_Fixed(), MeterDriver)
    assert not isinstance(object(), MeterDriver)
