"""bench billing on a day of readings: fresh customers per round, clean audits, a real PNG."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.billing import audit_table, bill_table, run_billing, spread
from meterseal.bench.billing_data import signed_fleet
from meterseal.bench.billing_plot import plot_billing
from meterseal.billing.service import PHASES
from meterseal.crypto.suites import ED25519, P256
from tests.storage.databases import postgres_url  # noqa: F401 - fixture

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def test_billing_bench_bills_fresh_customers_audits_clean_and_plots(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store == "postgres":
        request.getfixturevalue("postgres_url")  # skips when PostgreSQL is not reachable
    bench = run_billing(
        Console(file=io.StringIO()),
        P256,
        customers=(1, 2),
        stores=(store,),
        audits=1,
        intervals=96,
        cache=tmp_path / "cache",
        workers=1,
    )
    assert [(r.store, r.customers, len(r.phases), len(r.audits)) for r in bench.rounds] == [
        (store, 1, 1, 1),
        (store, 2, 2, 1),
    ]
    assert bench.meters == 4  # the warm-up bill's customer and 1 + 2 fresh ones
    assert bench.runs[0].rows == 4 * 96
    audited = [a.bill_id for r in bench.rounds for a in r.audits]
    assert len(set(audited)) == len(audited)
    for r in bench.rounds:
        assert all(set(p) == set(PHASES) for p in r.phases)
        assert all(a.signatures == 96 and a.findings == 0 for a in r.audits)
        assert min(r.audit_p50, r.bare_p50, r.per_second) > 0
    assert bench.findings == 0
    bills = bill_table(bench)
    assert [row[:4] for row in bills.rows] == [(store, "1", "1", "96"), (store, "2", "2", "96")]
    assert all(row[-1] in ("PASS", "FAIL") for row in bills.rows)
    assert bills.verdict is not None
    assert bills.verdict.met == all(row[-1] == "PASS" for row in bills.rows)
    audits = audit_table(bench)
    assert [row[-1] for row in audits.rows] == ["1/1 clean", "1/1 clean"]
    assert audits.verdict is not None
    assert audits.verdict.met == all(row[-2] == "PASS" for row in audits.rows)
    assert "| store | customers |" in bills.markdown()
    path = plot_billing(bench, tmp_path / "img" / "bench-billing.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_signed_months_are_cached_and_resigned_only_when_they_do_not_fit(tmp_path: Path) -> None:
    first = signed_fleet(tmp_path, P256, 3, 8, workers=1)
    assert not first.cached
    assert first.sign_seconds is not None
    again = signed_fleet(tmp_path, P256, 2, 8, workers=1)
    assert again.cached  # a cache for more meters serves fewer
    assert again.sign_seconds == first.sign_seconds
    assert (again.meters, again.period) == (first.meters[:2], first.period)
    assert not signed_fleet(tmp_path, P256, 4, 8, workers=1).cached  # too few meters
    assert not signed_fleet(tmp_path, ED25519, 2, 8, workers=1).cached  # another suite
    assert not signed_fleet(tmp_path, ED25519, 2, 4, workers=1).cached  # another month


def test_spread_picks_first_last_and_evenly_between() -> None:
    picked = spread(10_000, 10)
    assert (picked[0], picked[-1], len(picked)) == (0, 9_999, 10)
    assert spread(3, 10) == [0, 1, 2]
    assert spread(1, 10) == [0]
    assert spread(5, 0) == []


def test_billing_bench_refuses_unknown_stores_before_signing_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not mysql"):
        run_billing(Console(file=io.StringIO()), P256, stores=("mysql",), cache=tmp_path)
    assert not any(tmp_path.iterdir())
