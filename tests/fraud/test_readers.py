"""Reading the long CSV, the SGCC layout and labels; bad input gets one clear error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from meterseal.fraud.data import Consumption, FraudDataError, UnknownCustomer
from meterseal.fraud.fleet import Labelled
from meterseal.fraud.readers import read_labels, read_long_csv, read_sgcc
from meterseal.fraud.report import write_fleet

HEADER = "customer_id,timestamp,kwh\n"


def _write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_written_fleet_reads_back_the_same(tmp_path: Path, small_fleet: Labelled) -> None:
    few = Labelled(small_fleet.data.take(slice(0, 12)), small_fleet.alterations)
    path = tmp_path / "fleet.csv"
    labels = write_fleet(few, path)
    assert few.data.tz is not None
    data = read_long_csv(path, tz=few.data.tz)
    assert data.customers == few.data.customers
    assert data.first_day == few.data.first_day
    np.testing.assert_allclose(data.energy, few.data.energy, atol=5e-4)
    flags = read_labels(labels)
    assert [flags[c] for c in data.customers] == few.thief.tolist()


def test_no_reader_has_a_default_time_zone() -> None:
    """Days cut at the wrong midnight hide thefts: every reader of 15-minute readings must be
    told the meters' zone (the CLI asks for --tz, or 'auto' estimates one and prints it)."""
    import inspect

    from meterseal.fraud.data import from_arrays
    from meterseal.fraud.readers import read_store
    from meterseal.fraud.stream import read_long_csv_streaming
    from meterseal.kvs.export_read import read_consumption

    for reader in (
        read_long_csv,
        read_long_csv_streaming,
        read_store,
        read_consumption,
        from_arrays,
    ):
        zone = inspect.signature(reader).parameters["tz"]
        assert zone.default is inspect.Parameter.empty, reader.__name__


def test_phasor_columns_become_daily_means_per_phase(tmp_path: Path) -> None:
    rows = ["customer_id,timestamp,kwh,voltage_l1,current_l1,voltage_l2,current_l2,power_l1"]
    for i in range(96 * 2):
        stamp = 1_790_000_000 - 1_790_000_000 % 86_400 + i * 900
        rows.append(f"c1,{stamp},0.25,230,{2 + i // 96},231,1.0,1000")
    data = read_long_csv(_write(tmp_path, "\n".join(rows) + "\n"), tz="UTC")
    assert data.phasor is not None
    np.testing.assert_allclose(data.phasor.current[0, :, 0], [2.0, 3.0])
    np.testing.assert_allclose(data.phasor.current[0, :, 1], [1.0, 1.0])
    assert np.isnan(data.phasor.current[0, :, 2]).all()
    np.testing.assert_allclose(data.phasor.energy_kwh[0], [24.0, 24.0])  # 1 kW all day


def _day_of_readings(tmp_path: Path, first: str, count: int, tz: str) -> Consumption:
    start = int(dt.datetime.fromisoformat(first).timestamp())
    text = HEADER + "".join(f"a,{start + 900 * i},{1 + i % 7}\n" for i in range(count))
    return read_long_csv(_write(tmp_path, text), tz=tz)


def test_days_are_cut_at_local_midnight(tmp_path: Path) -> None:
    # Berlin in summer is UTC+2: its 2026-09-02 runs from 22:00 UTC on 09-01.
    data = _day_of_readings(tmp_path, "2026-09-01T22:00:00+00:00", 96, "Europe/Berlin")
    assert (data.first_day, data.periods, data.tz) == (dt.date(2026, 9, 2), 1, "Europe/Berlin")
    np.testing.assert_array_equal(data.energy[0, 0], [1 + i % 7 for i in range(96)])
    utc = _day_of_readings(tmp_path, "2026-09-01T22:00:00+00:00", 96, "UTC")
    assert (utc.first_day, utc.periods) == (dt.date(2026, 9, 1), 2)


def test_days_clocks_change_keep_96_wall_clock_slots(tmp_path: Path) -> None:
    # 2026-03-29 (Berlin) has 23 hours: 02:00-03:00 does not exist.
    spring = _day_of_readings(tmp_path, "2026-03-28T23:00:00+00:00", 92, "Europe/Berlin")
    assert (spring.first_day, spring.periods) == (dt.date(2026, 3, 29), 1)
    assert np.isnan(spring.energy[0, 0, 8:12]).all()
    assert not np.isnan(np.delete(spring.energy[0, 0], range(8, 12))).any()
    # 2026-10-25 has 25 hours: 02:00-03:00 twice, and those slots carry the mean of both.
    autumn = _day_of_readings(tmp_path, "2026-10-24T22:00:00+00:00", 100, "Europe/Berlin")
    assert (autumn.first_day, autumn.periods) == (dt.date(2026, 10, 25), 1)
    values = [1 + i % 7 for i in range(100)]
    np.testing.assert_allclose(autumn.energy[0, 0, :8], values[:8])
    np.testing.assert_allclose(autumn.energy[0, 0, 8], (values[8] + values[12]) / 2)
    np.testing.assert_allclose(autumn.energy[0, 0, 12:], values[16:])


def test_an_unknown_time_zone_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FraudDataError, match="unknown time zone 'Mars/Olympus'"):
        _day_of_readings(tmp_path, "2026-09-01T00:00:00+00:00", 4, "Mars/Olympus")


def test_iso_timestamps_missing_values_and_missing_days(tmp_path: Path) -> None:
    text = (
        HEADER + "a,2026-09-01T00:00:00Z,0.1\na,2026-09-01T00:15:00Z,\nb,2026-09-03T00:00:00,0.2\n"
    )
    data = read_long_csv(_write(tmp_path, text), tz="UTC")
    assert data.customers == ("a", "b")
    assert data.periods == 3
    assert data.slots == 96
    assert data.first_day == dt.date(2026, 9, 1)
    assert np.isnan(data.energy[0, 0, 1])  # the empty cell is a missing reading
    assert np.isnan(data.energy[0, 2]).all()
    assert np.isnan(data.energy[1, 0]).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id,kwh\na,1\n", "missing column"),
        (HEADER, "no readings"),
        (HEADER + "a,1789948800,-0.5\n", "negative reading"),
        (HEADER + "a,1789948800,lots\n", "line 2: kwh 'lots' is not a number"),
        (HEADER + "a,yesterday,1\n", "line 2: timestamp 'yesterday' unreadable"),
        (HEADER + "a,1789948800,1\na,1789948800,2\n", "two readings of 'a'"),
        (
            HEADER
            + "".join(f"a,{1789948800 + 900 * i},1\n" for i in range(4))
            + "a,1789948810,1\n",
            "off the 900-s grid",
        ),
        (HEADER + "a,1789948800,1\nb,1789948800,1,extra,fields\n", "not a readable CSV"),
        (HEADER + "a,1789948800,1,extra,fields\n", "not a readable CSV"),
        (HEADER + ",1789948800,1\n", "empty customer_id"),
        ("\x00\x01\x02", "missing column"),
    ],
)
def test_bad_long_csv_gets_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FraudDataError, match=message):
        read_long_csv(_write(tmp_path, text), tz="UTC")


@pytest.mark.parametrize(
    ("stamps", "message"),
    [
        (["2026-09-01T00:00:00Z", "2026-09-01T00:15:00Z", "noon"], "line 4: timestamp 'noon'"),
        (["1788220800", "1788221700", ""], "line 4: timestamp"),
        (["1788220800", "2026-09-01T00:15:00Z"], "line 2: timestamp '1788220800'"),
    ],
)
def test_an_unreadable_timestamp_is_named_by_its_line(
    tmp_path: Path, stamps: list[str], message: str
) -> None:
    """ISO text and Unix seconds are each read whole; a cell that is neither, an empty
    cell or a file mixing both is an error at the first line that does not fit."""
    text = HEADER + "".join(f"a,{stamp},1\n" for stamp in stamps)
    with pytest.raises(FraudDataError, match=message):
        read_long_csv(_write(tmp_path, text), tz="UTC")


def test_unix_seconds_as_text_are_read(tmp_path: Path) -> None:
    text = HEADER + "".join(f'a,"{1788220800 + 900 * i}",1\n' for i in range(96))
    data = read_long_csv(_write(tmp_path, text), tz="UTC")
    assert (data.first_day, data.periods) == (dt.date(2026, 9, 1), 1)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FraudDataError, match="no such file"):
        read_long_csv(tmp_path / "absent.csv", tz="UTC")


def test_sgcc_layout_with_unsorted_and_missing_days(tmp_path: Path) -> None:
    # Columns out of order, 2014/1/3 absent altogether, empty cells: all missing days.
    text = (
        "CONS_NO,FLAG,2014/1/2,2014/1/1,2014/1/4,2014/1/5,2014/1/6,2014/1/7,2014/1/8\n"
        "A1,1,2.0,1.0,4.0,,6.0,7.0,8.0\n"
        "B2,0,1.5,1.5,1.5,1.5,1.5,1.5,1.5\n"
    )
    data, labels = read_sgcc(_write(tmp_path, text))
    assert labels == {"A1": True, "B2": False}
    assert data.first_day == dt.date(2014, 1, 1)
    assert data.period_days == 7
    assert data.energy.shape == (2, 2, 7)  # 8 days: two weeks, the second mostly empty
    week = data.energy[0, 0]
    np.testing.assert_array_equal(week[[0, 1, 3, 5, 6]], [1.0, 2.0, 4.0, 6.0, 7.0])
    assert np.isnan(week[2])
    assert np.isnan(week[4])


def test_sgcc_layout_without_labels_is_data_to_rank(tmp_path: Path) -> None:
    text = "CONS_NO,2014/1/1,2014/1/2\nA1,1.0,2.0\nB2,1.5,\n"
    data, labels = read_sgcc(_write(tmp_path, text))
    assert labels is None
    assert data.customers == ("A1", "B2")
    np.testing.assert_array_equal(data.energy[0, 0, :2], [1.0, 2.0])
    assert np.isnan(data.energy[1, 0, 1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CONS_NO,2014/1/1\nA,1\nA,2\n", "'A' twice"),
        ("CONS_NO,someday\nA,1\n", "are not dates"),
    ],
)
def test_bad_unlabelled_sgcc_gets_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FraudDataError, match=message):
        read_sgcc(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ID,FLAG,2014/1/1\nA,1,1\n", "CONS_NO"),
        ("CONS_NO,FLAG,2014/1/1\nA,2,1\n", "FLAG must be 0 or 1"),
        ("CONS_NO,FLAG,yesterday\nA,1,1\n", "are not dates"),
        ("CONS_NO,FLAG,2014/1/1\nA,1,-3\n", "negative reading"),
        ("CONS_NO,FLAG,2014/1/1\nA,1,1\nA,0,1\n", "'A' twice"),
    ],
)
def test_bad_sgcc_gets_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FraudDataError, match=message):
        read_sgcc(_write(tmp_path, text))


def test_labels_must_be_yes_or_no(tmp_path: Path) -> None:
    ok = read_labels(_write(tmp_path, "customer_id,thief\na,1\nb,false\n", "l.csv"))
    assert ok == {"a": True, "b": False}
    with pytest.raises(FraudDataError, match="line 3: thief 'maybe'"):
        read_labels(_write(tmp_path, "customer_id,thief\na,1\nb,maybe\n", "l.csv"))


def test_unknown_customer_is_named(small_fleet: Labelled) -> None:
    data: Consumption = small_fleet.data
    assert data.index(data.customers[3]) == 3
    with pytest.raises(UnknownCustomer, match="no customer 'nobody'"):
        data.index("nobody")
