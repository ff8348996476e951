"""`meterseal fraud rank | explain | evaluate | simulate` on files, and their errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.command_line import invoke


@pytest.fixture(scope="module")
def fleet_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated labelled fleet written by `fraud simulate`: the CSV and its labels."""
    out = tmp_path_factory.mktemp("fleet") / "fleet.csv"
    result = invoke(
        [
            "fraud",
            "simulate",
            str(out),
            "--customers",
            "160",
            "--days",
            "21",
            "--share",
            "0.1",
            "--seed",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    return out, out.with_name("fleet-labels.csv")


def test_rank_writes_the_ranking_and_the_u_matrix(
    fleet_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    data, labels = fleet_csv
    out = tmp_path / "ranking.csv"
    result = invoke(
        [
            "fraud",
            "rank",
            "--csv",
            str(data),
            "--tz",
            "Europe/Berlin",
            "--out",
            str(out),
            "--top",
            "5",
        ]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 160
    assert [int(r["rank"]) for r in rows] == list(range(1, 161))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    truth = {r["customer_id"]: r["thief"] == "1" for r in csv.DictReader(labels.open())}
    top = [r["customer_id"] for r in rows[:16]]
    assert sum(truth[c] for c in top) >= 12  # 16 thieves among 160
    assert rows[0]["explanation"]
    assert rows[0]["pattern"]
    assert (tmp_path / "ranking-umatrix.png").exists()
    assert "customers ranked by theft likelihood (meterseal ranking)" in " ".join(
        result.output.split()
    )  # the table says what it ranks (it was titled "meterseal")
    assert rows[0]["customer_id"] in result.output


def test_rank_with_inspection_labels_uses_the_supervised_model(
    fleet_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    data, labels = fleet_csv
    out = tmp_path / "r.csv"
    result = invoke(
        [
            "fraud",
            "rank",
            "--csv",
            str(data),
            "--tz",
            "Europe/Berlin",
            "--labels",
            str(labels),
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "supervised" in result.output


def test_explain_plots_one_customer(fleet_csv: tuple[Path, Path], tmp_path: Path) -> None:
    data, labels = fleet_csv
    thief = next(r["customer_id"] for r in csv.DictReader(labels.open()) if r["thief"] == "1")
    png = tmp_path / "one.png"
    result = invoke(
        ["fraud", "explain", thief, "--csv", str(data), "--tz", "Europe/Berlin", "--out", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 20_000
    assert f"{thief}: rank" in result.output
    assert "t =" in result.output


def test_evaluate_prints_every_method(fleet_csv: tuple[Path, Path]) -> None:
    data, labels = fleet_csv
    result = invoke(
        ["fraud", "evaluate", str(data), "--labels", str(labels), "--tz", "Europe/Berlin"]
    )
    assert result.exit_code == 0, result.output
    for method in ("meterseal", "IsolationForest", "LocalOutlierFactor", "MAP@100", "AUC"):
        assert method in result.output
    assert "| scaled |" in result.output or "scaled |" in result.output  # recall per pattern


def test_evaluate_an_sgcc_file(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    import datetime as dt

    first = dt.date(2014, 1, 1)
    days = [f"{d.year}/{d.month}/{d.day}" for d in (first + dt.timedelta(i) for i in range(140))]
    lines = ["CONS_NO,FLAG," + ",".join(days)]
    for i in range(120):
        level = rng.uniform(5, 20) * np.exp(rng.normal(0, 0.15, len(days)))
        thief = i % 10 == 0
        if thief:
            level[80:] *= 0.3
        cells = [f"{v:.2f}" if rng.random() > 0.02 else "" for v in level]
        lines.append(f"C{i},{int(thief)}," + ",".join(cells))
    path = tmp_path / "sgcc.csv"
    path.write_text("\n".join(lines) + "\n")
    result = invoke(["fraud", "evaluate", str(path), "--no-supervised"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("| meterseal |"))
    assert float(row.split("|")[2]) > 0.9  # AUC on weekly curves


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fraud", "rank"], "exactly one data source"),
        (["fraud", "rank", "--csv", "a.csv", "--sgcc", "b.csv"], "exactly one data source"),
        (["fraud", "rank", "--csv", "/nonexistent.csv", "--tz", "UTC"], "no such file"),
        (["fraud", "rank", "--csv", "a.csv"], "--csv needs --tz"),
        (
            ["fraud", "rank", "--store", "sqlite:///x.db", "--from", "2026-01-01"],
            "--store needs --tz",
        ),
        (["fraud", "rank", "--store", "sqlite:///x.db"], "--store needs --from"),
        (["fraud", "evaluate", "plain.csv"], "needs --labels"),
        # --method is checked before the data is read (a.csv does not exist).
        (["fraud", "rank", "--csv", "a.csv", "--tz", "UTC", "--method", "som"], "one of ensemble"),
        (
            ["fraud", "rank", "--csv", "a.csv", "--tz", "UTC", "--method", "supervised"],
            "--method supervised needs --labels or --model",
        ),
        (
            ["fraud", "rank", "--csv", "a.csv", "--tz", "UTC", "--method", "seed", "--model", "m"],
            "--model is a supervised model, not the seed ranking",
        ),
        (
            ["fraud", "rank", "--csv", "a.csv", "--tz", "UTC", "--labels", "l", "--model", "m"],
            "name one",
        ),
        (
            [
                "fraud",
                "rank",
                "--csv",
                "a.csv",
                "--tz",
                "UTC",
                "--method",
                "ensemble",
                "--labels",
                "l",
            ],
            "unused by --method ensemble",
        ),
    ],
)
def test_bad_invocations_exit_with_a_message(args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())


def test_explain_an_unknown_customer(fleet_csv: tuple[Path, Path]) -> None:
    result = invoke(["fraud", "explain", "nobody", "--csv", str(fleet_csv[0]), "--tz", "UTC"])
    assert result.exit_code == 2
    assert "no customer 'nobody'" in result.output


def test_the_time_zone_option_and_bad_outputs(fleet_csv: tuple[Path, Path], tmp_path: Path) -> None:
    """Days can be cut in another zone than the simulator's Europe/Berlin;
    an unknown zone or an unwritable picture is one clear error."""
    data, _ = fleet_csv
    out = tmp_path / "c0.png"
    utc = invoke(
        ["fraud", "explain", "C000000", "--csv", str(data), "--tz", "UTC", "--out", str(out)]
    )
    assert utc.exit_code == 0, utc.output
    assert out.read_bytes().startswith(b"\x89PNG")
    wrong = invoke(
        ["fraud", "explain", "C000000", "--csv", str(data), "--tz", "UTC", "--out", "x.csv"]
    )
    assert wrong.exit_code == 2
    assert "cannot write x.csv" in " ".join(wrong.output.split())
    bad = invoke(["fraud", "rank", "--csv", str(data), "--tz", "Mars/Olympus"])
    assert bad.exit_code == 2
    assert "unknown time zone 'Mars/Olympus'" in " ".join(bad.output.split())


def test_a_named_csv_wins_over_the_configured_store(
    fleet_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    # meterseal.toml gives every command its store; naming --csv must not make that two sources.
    from meterseal.config import render_config

    config = tmp_path / "meterseal.toml"
    config.write_text(render_config({"store": {"url": "sqlite:///meterseal.db"}}))
    out = tmp_path / "ranking.csv"
    result = invoke(
        [
            "fraud",
            "rank",
            "--csv",
            str(fleet_csv[0]),
            "--tz",
            "UTC",
            "--out",
            str(out),
            "--top",
            "1",
        ],
        env={"MS_CONFIG": str(config)},
    )
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(out.open()))) == 160
    both = ["fraud", "rank", "--csv", str(fleet_csv[0]), "--store", "sqlite:///x.db"]
    assert "name exactly one data source" in invoke(both, env={"MS_CONFIG": str(config)}).output


def test_without_tz_the_csv_path_stops_or_estimates_and_says_so(
    fleet_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    """No silent default zone: without --tz rank stops with what to pass; --tz auto
    estimates the simulator fleet's winter offset (UTC+1, Europe/Berlin in September is
    UTC+2: a fixed offset within an hour of it) and prints it."""
    data, _ = fleet_csv
    stopped = invoke(["fraud", "rank", "--csv", str(data), "--out", str(tmp_path / "r.csv")])
    assert stopped.exit_code == 2
    said = " ".join(stopped.output.replace("│", " ").split())
    assert "--csv needs --tz" in said
    assert "There is no default" in said
    assert not (tmp_path / "r.csv").exists()
    auto = invoke(
        ["fraud", "rank", "--csv", str(data), "--tz", "auto", "--out", str(tmp_path / "a.csv")]
    )
    assert auto.exit_code == 0, auto.output
    said = " ".join(auto.output.replace("│", " ").split())
    assert "time zone estimated from the readings: UTC+0" in said
    assert "pass --tz NAME to set the zone" in said


def test_printed_scores_do_not_tie(fleet_csv: tuple[Path, Path], tmp_path: Path) -> None:
    """Customers without evidence of theft are still ordered: no two printed scores equal."""
    out = tmp_path / "ranking.csv"
    result = invoke(
        ["fraud", "rank", "--csv", str(fleet_csv[0]), "--tz", "Europe/Berlin", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    printed = [r["score"] for r in csv.DictReader(out.open())]
    assert len(set(printed)) == len(printed)


def test_evaluate_trains_on_the_labels_only_when_asked(fleet_csv: tuple[Path, Path]) -> None:
    data, labels = fleet_csv
    plain = invoke(["fraud", "evaluate", str(data), "--labels", str(labels), "--tz", "UTC"])
    assert plain.exit_code == 0, plain.output
    assert "supervised" not in plain.output
    asked = ["fraud", "evaluate", str(data), "--labels", str(labels), "--tz", "UTC", "--supervised"]
    result = invoke(asked)
    assert result.exit_code == 0, result.output
    assert "meterseal (supervised)" in result.output


def test_an_sgcc_file_without_labels_ranks_but_does_not_evaluate(tmp_path: Path) -> None:
    import datetime as dt

    import numpy as np

    rng = np.random.default_rng(2)
    first = dt.date(2015, 3, 2)
    days = [f"{d.year}/{d.month}/{d.day}" for d in (first + dt.timedelta(i) for i in range(70))]
    lines = ["CONS_NO," + ",".join(days)]
    for i in range(60):
        level = rng.uniform(5, 20) * np.exp(rng.normal(0, 0.15, len(days)))
        lines.append(f"C{i}," + ",".join(f"{v:.2f}" for v in level))
    path = tmp_path / "unlabelled.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ranking.csv"
    ranked = invoke(["fraud", "rank", "--sgcc", str(path), "--out", str(out), "--top", "3"])
    assert ranked.exit_code == 0, ranked.output
    assert len(list(csv.DictReader(out.open()))) == 60
    refused = invoke(["fraud", "evaluate", str(path)])
    assert refused.exit_code == 2
    assert "no FLAG column" in " ".join(refused.output.replace("│", " ").split())


def test_a_model_trained_on_one_file_ranks_another(
    fleet_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    """`fraud train` saves the supervised model; `rank --model` applies it to other data
    (here a second simulated fleet); a file that is no model is one clear error."""
    data, labels = fleet_csv
    model = tmp_path / "model.joblib"
    trained = invoke(
        ["fraud", "train", str(model), "--csv", str(data), "--labels", str(labels), "--tz", "UTC"]
    )
    assert trained.exit_code == 0, trained.output
    assert f"model: {model}" in " ".join(trained.output.split())
    other = tmp_path / "other.csv"
    made = invoke(["fraud", "simulate", str(other), "--customers", "120", "--days", "21",
                   "--share", "0.1", "--seed", "9"])  # fmt: skip
    assert made.exit_code == 0, made.output
    out = tmp_path / "ranked.csv"
    ranked = invoke(["fraud", "rank", "--csv", str(other), "--tz", "Europe/Berlin",
                     "--model", str(model), "--out", str(out)])  # fmt: skip
    assert ranked.exit_code == 0, ranked.output
    assert "model model.joblib" in " ".join(ranked.output.split())
    rows = list(csv.DictReader(out.open()))
    truth = {r["customer_id"]: r["thief"] == "1" for r in csv.DictReader(
        other.with_name("other-labels.csv").open())}  # fmt: skip
    assert sum(truth[r["customer_id"]] for r in rows[:12]) >= 8  # 12 thieves among 120
    seed = invoke(["fraud", "rank", "--csv", str(other), "--tz", "UTC", "--method", "seed",
                   "--out", str(tmp_path / "seed.csv")])  # fmt: skip
    assert seed.exit_code == 0, seed.output
    assert "SOM correlation (seed)" in seed.output
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(b"not a model")
    bad = invoke(["fraud", "rank", "--csv", str(other), "--tz", "UTC", "--model", str(junk)])
    assert bad.exit_code == 2
    assert "not a meterseal fraud model" in " ".join(bad.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("method", "title", "found"),
    [
        ("ensemble", "meterseal", 12),
        ("seed", "SOM correlation (seed)", 4),  # the shape alone: no level, no zeros
        ("supervised", "supervised", 10),
    ],
)
def test_each_ranking_method_ranks_every_customer_without_ties(
    fleet_csv: tuple[Path, Path], tmp_path: Path, method: str, title: str, found: int
) -> None:
    """`rank --method ensemble|seed|supervised` (supervised with --labels: out-of-fold
    scores for the labelled customers); no two printed scores alike in any of them."""
    data, labels = fleet_csv
    out = tmp_path / "ranking.csv"
    args = ["fraud", "rank", "--csv", str(data), "--tz", "Europe/Berlin", "--method", method]
    extra = ["--labels", str(labels)] if method == "supervised" else []
    result = invoke([*args, *extra, "--out", str(out), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert f"({title}" in " ".join(result.output.split())
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 160
    printed = [r["score"] for r in rows]
    assert len(set(printed)) == len(printed)
    truth = {r["customer_id"]: r["thief"] == "1" for r in csv.DictReader(labels.open())}
    top = sum(truth[r["customer_id"]] for r in rows[:16])
    assert top >= found, top  # 16 thieves among 160: 1.6 by chance


def test_evaluate_a_simulated_fleet() -> None:
    """`fraud evaluate sim`: a labelled simulator fleet, every method and pattern."""
    result = invoke(
        ["fraud", "evaluate", "sim", "--customers", "150", "--days", "21", "--share", "0.1"]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "sim: 150 customers" in said
    row = next(line for line in result.output.splitlines() if line.startswith("| meterseal |"))
    assert float(row.split("|")[2]) > 0.9  # AUC
    for method in ("IsolationForest", "LocalOutlierFactor", "SOM correlation (seed)"):
        assert method in result.output


def _sgcc(path: Path, customers: int, days: int, seed: int, *, flag: bool) -> Path:
    """An SGCC-layout file (daily kWh, dates as the data set writes them), one customer in
    ten stealing from day 70 on; with or without the FLAG column."""
    import datetime as dt

    import numpy as np

    rng = np.random.default_rng(seed)
    first = dt.date(2015, 1, 5)
    dates = [f"{d.year}/{d.month}/{d.day}" for d in (first + dt.timedelta(i) for i in range(days))]
    lines = ["CONS_NO," + ("FLAG," if flag else "") + ",".join(dates)]
    for i in range(customers):
        level = rng.uniform(5, 20) * np.exp(rng.normal(0, 0.15, days))
        if i % 10 == 0:
            level[70:] *= 0.3
        cells = ",".join(f"{v:.2f}" for v in level)
        lines.append(f"S{seed}-{i}," + (f"{int(i % 10 == 0)}," if flag else "") + cells)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_sgcc_model_ranks_an_unlabelled_sgcc_file_and_refuses_quarter_hours(
    fleet_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    """`fraud train --sgcc` learns from the file's FLAG; `rank --sgcc --model` ranks a file
    without FLAG, and `evaluate` scores it with --labels; the model refuses 15-minute days
    (its features are on weekly periods of daily values) before anything is analysed."""
    labelled = _sgcc(tmp_path / "labelled.csv", 100, 120, 5, flag=True)
    plain = _sgcc(tmp_path / "plain.csv", 100, 120, 6, flag=False)
    model = tmp_path / "sgcc.joblib"
    trained = invoke(["fraud", "train", str(model), "--sgcc", str(labelled)])
    assert trained.exit_code == 0, trained.output
    assert "10 thieves among 100 labelled" in " ".join(trained.output.split())
    out = tmp_path / "ranking.csv"
    ranked = invoke(
        ["fraud", "rank", "--sgcc", str(plain), "--model", str(model), "--out", str(out)]
    )
    assert ranked.exit_code == 0, ranked.output
    top = [r["customer_id"] for r in csv.DictReader(out.open())][:10]
    assert sum(int(c.split("-")[1]) % 10 == 0 for c in top) >= 8
    labels = tmp_path / "labels.csv"
    labels.write_text("customer_id,thief\n" + "".join(
        f"S6-{i},{int(i % 10 == 0)}\n" for i in range(100)))  # fmt: skip
    scored = invoke(["fraud", "evaluate", str(plain), "--labels", str(labels)])
    assert scored.exit_code == 0, scored.output
    row = next(line for line in scored.output.splitlines() if line.startswith("| meterseal |"))
    assert float(row.split("|")[2]) > 0.9  # AUC
    refused = invoke(["fraud", "rank", "--csv", str(fleet_csv[0]), "--tz", "UTC",
                      "--model", str(model), "--out", str(tmp_path / "no.csv")])  # fmt: skip
    assert refused.exit_code == 2
    said = " ".join(refused.output.replace("│", " ").split())
    assert "trained on periods of 7 days of 7 readings, this data has days of 96" in said
    assert not (tmp_path / "no.csv").exists()


def test_simulate_in_another_zone_says_how_to_rank_it(tmp_path: Path) -> None:
    """`simulate --tz UTC` (docs/benchmarks.md's long-CSV run): the households and their
    thieves live in UTC days, the command prints the --tz to rank with, and ranking in
    that zone finds the thieves."""
    fleet = tmp_path / "utc.csv"
    made = invoke(["fraud", "simulate", str(fleet), "--customers", "120", "--days", "21",
                   "--share", "0.1", "--seed", "7", "--tz", "UTC"])  # fmt: skip
    assert made.exit_code == 0, made.output
    said = " ".join(made.output.split())
    assert f"meters' time zone: UTC (rank with: --csv {fleet} --tz UTC)" in said
    out = tmp_path / "ranking.csv"
    ranked = invoke(["fraud", "rank", "--csv", str(fleet), "--tz", "UTC", "--out", str(out),
                     "--top", "3"])  # fmt: skip
    assert ranked.exit_code == 0, ranked.output
    truth = {r["customer_id"]: r["thief"] == "1" for r in csv.DictReader(
        tmp_path.joinpath("utc-labels.csv").open())}  # fmt: skip
    top = [r["customer_id"] for r in csv.DictReader(out.open())][:12]
    assert sum(truth[c] for c in top) >= 9  # 12 thieves among 120
