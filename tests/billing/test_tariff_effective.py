"""Tariff versions effective from a date: the version in force at a period's start prices it;
a tariff without a date keeps its bytes and digest; bad dates are refused by field name."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.bill import parse_signed_bill
from meterseal.billing.tariff import Tariff, TariffBook, TariffError, builtin_tariffs, loads_tariff
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run

TOU = builtin_tariffs().latest("example-tou")  # Europe/Berlin


def _at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def test_a_tariff_without_a_date_keeps_its_bytes() -> None:
    assert "effective_from" not in TOU.to_dict()
    assert Tariff.from_cbor(TOU.to_cbor()) == TOU
    dated = dataclasses.replace(TOU, effective_from=dt.date(2027, 1, 1))
    assert dated.digest() != TOU.digest()
    assert dated.to_dict()["effective_from"] == "2027-01-01"


@given(st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_a_dated_version_round_trips_through_toml_and_cbor(day: dt.date) -> None:
    dated = dataclasses.replace(TOU, version=2, effective_from=day)
    assert loads_tariff(dated.to_toml()) == dated
    assert Tariff.from_cbor(dated.to_cbor()) == dated
    native = dated.to_toml().replace(f'"{day.isoformat()}"', day.isoformat())
    assert loads_tariff(native) == dated  # a TOML date literal reads the same


def test_the_version_in_force_is_chosen_by_the_local_day() -> None:
    v2 = dataclasses.replace(TOU, version=2, effective_from=dt.date(2027, 1, 1))
    v3 = dataclasses.replace(TOU, version=3, effective_from=dt.date(2027, 6, 1))
    book = TariffBook([TOU, v2, v3])
    assert book.in_force(TOU.tariff_id, _at("2026-12-31T22:30:00+00:00")) == TOU
    assert book.in_force(TOU.tariff_id, _at("2026-12-31T23:30:00+00:00")) == v2  # Berlin: Jan 1
    assert book.in_force(TOU.tariff_id, _at("2027-07-01T00:00:00+00:00")) == v3
    only_later = TariffBook([v2])
    with pytest.raises(TariffError, match="no version of example-tou is in force on 2026-12-01"):
        only_later.in_force(TOU.tariff_id, _at("2026-12-01T12:00:00+00:00"))
    with pytest.raises(TariffError, match="no tariff nope"):
        book.in_force("nope", 0)


@pytest.mark.parametrize("bad", ['"2027-13-01"', '"1 Jan 2027"', "12", '"1969-12-31"'])
def test_a_bad_date_is_refused_by_name(bad: str) -> None:
    text = TOU.to_toml() + ""
    text = text.replace("[rates]", f"effective_from = {bad}\n\n[rates]", 1)
    with pytest.raises(TariffError, match="effective_from"):
        loads_tariff(text)


def test_the_bill_command_prices_with_the_version_in_force(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    later = dataclasses.replace(TOU, version=2, effective_from=dt.date(2027, 1, 1))
    (tmp_path / "v2.toml").write_text(later.to_toml())
    run("tariffs", "add", str(tmp_path / "v2.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-tou")  # the day of readings is in 2026: v1
    with Store.open(store) as db:
        (summary,) = BillStore(db).bill_summaries(fleet[0].customer_id)
        stored = BillStore(db).bill(summary.bill_id)
        assert stored is not None
        bill = parse_signed_bill(stored.signed_bill)[0]
    assert (bill.tariff_version, bill.tariff_digest) == (1, TOU.digest())
