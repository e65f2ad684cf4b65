"""eval trainticket: the data read the way its README says, the folds never see the faults
they score, and a short real run through the CLI."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from evaluation.trainticket import (
    DAYS,
    FRONTEND,
    Fault,
    Setting,
    accuracy,
    load_day,
    load_faults,
    rank_fault,
    rank_of,
    topology,
)
from evaluation.trainticket_cv import choose, cross_validate, evaluate_trainticket
from mendloop.cli import main
from ml.component_rca import ComponentScore, RcaSettings


@pytest.fixture(scope="module")
def tt_root():
    from evaluation.cli import DEFAULT_DATASETS

    root = DEFAULT_DATASETS / "nezha-trainticket"
    if not root.is_dir():
        pytest.skip(f"dataset {root} not present")
    return root


def test_faults_use_inject_time_in_utc(tt_root):
    faults = load_faults(tt_root)
    assert len(faults) == 45
    assert sum(f.day == "2023-01-29" for f in faults) == 28
    first = faults[0]
    assert first.at == datetime(2023, 1, 29, 8, 43, 4, tzinfo=UTC).timestamp()
    assert first.service == "ts-contacts-service" and first.kind == "return"
    assert len({f.service for f in faults}) == 10
    kinds = [f.kind for f in faults]
    assert (kinds.count("cpu_contention"), kinds.count("network_delay")) == (7, 14)


def test_a_day_of_metrics_and_the_graph(tt_root):
    series = load_day(tt_root, "2023-01-30")
    comps = {s.component for s in series}
    assert len(comps) == 46 and FRONTEND in comps  # front_service.csv is the UI's
    assert len(series) == 46 * 19 + 5
    ui = {s.metric: s.values for s in series if s.component == FRONTEND}
    same = np.isfinite(ui["LatencyP90(s)"])  # the entry latency is the UI's own
    assert same.sum() > 600
    assert np.array_equal(ui["LatencyP90(s)"][same], ui["PodServerLatencyP90(s)"][same])
    ts = next(s.ts for s in series if s.component == "ts-basic-service")
    assert ts.size == 741 and np.all(np.diff(ts) > 50)
    faults = [f for f in load_faults(tt_root) if f.day == "2023-01-30"]
    assert all(ts[0] < f.at < ts[-1] for f in faults)  # inject_time falls in the metrics
    graph = topology()
    assert sum(len(d) for c, d in graph.items() if c != FRONTEND) == 55
    assert all(d.startswith("ts-") for deps in graph.values() for d in deps)


def test_a_cpu_contention_is_found_on_its_own_pod(tt_root):
    # the obvious fault type (README: CPU jumps from ~1 % to 78-100 %): a wrong clock, a
    # wrong window or a broken deviation would lose it
    series = load_day(tt_root, "2023-01-29")
    faults = [f for f in load_faults(tt_root, ["2023-01-29"]) if f.kind == "cpu_contention"]
    setting = Setting(240, 1800, RcaSettings(propagation="none"))
    ranks = [rank_of(rank_fault(series, f, setting), f.service) for f in faults]
    assert accuracy(ranks)["AS@3"] >= 0.75, ranks
    later = [Fault(f.day, f.at + 3 * 3600, f.service, f.kind) for f in faults]
    moved = [rank_of(rank_fault(series, f, setting), f.service) for f in later]
    assert accuracy(moved)["AS@3"] < accuracy(ranks)["AS@3"]


def test_rank_and_accuracy_by_hand():
    ranked = [ComponentScore(c, 1.0, 1.0, 0.25, None, True) for c in ("a", "b", "c", "d")]
    assert rank_of(ranked, "c") == 3 and rank_of(ranked, "z") == 5
    assert accuracy([1, 2, 4, 9]) == {"AS@1": 0.25, "AS@3": 0.5, "AS@5": 0.75}
    assert accuracy([]) == {"AS@1": None, "AS@3": None, "AS@5": None}


def test_each_fold_is_scored_by_a_setting_chosen_on_the_others():
    faults = [Fault(d, float(i), "s", "k") for i, d in enumerate(["x", "x", "y", "y"])]
    # setting 0 is perfect on day x and useless on y; setting 1 the other way round
    table = np.array([[1, 1, 9, 9], [9, 9, 1, 1], [3, 3, 3, 3]])
    cv = cross_validate(table, faults, lambda f: f.day)
    assert cv["chosen"] == {"x": 1, "y": 0}  # each day gets the other day's best
    assert cv["ranks"].tolist() == [9, 9, 9, 9]  # so both days are scored badly, honestly
    assert choose(table, np.array([True, True, True, True])) == 0  # ties: MRR, then order


def test_a_short_real_run(tt_root):
    grid = [
        Setting(240, 1800, RcaSettings(propagation="none")),
        Setting(240, 600, RcaSettings(score="z", statistic="max", propagation="pagerank")),
    ]
    r = evaluate_trainticket(
        tt_root, DAYS, progress=lambda m: None, grid=grid, with_baselines=False
    )
    lodo = r["leave_one_day_out"]
    assert r["faults"] == 45 and set(lodo["chosen"]) == set(DAYS)
    assert sum(v["faults"] for v in lodo["per_fault_type"].values()) == 45
    assert 0 <= lodo["overall"]["AS@1"] <= lodo["overall"]["AS@3"] <= lodo["overall"]["AS@5"]
    assert len(r["per_fault"]) == 45 and r["published"]["MicroRCA (metrics)"]["AS@1"] == 0.2


def test_cli_refusals(tt_root, capsys):
    assert main(["eval", "trainticket", "--days", "2023-01-29"]) == 2
    assert "at least 2 days" in capsys.readouterr().err
    assert main(["eval", "trainticket", "--days", "2023-01-29,2023-02-01"]) == 2
    assert "no TrainTicket day 2023-02-01" in capsys.readouterr().err


def test_cli_on_a_damaged_copy(tt_root, tmp_path, capsys):
    for day in DAYS:
        (tmp_path / day / "metric").mkdir(parents=True)
        src = tt_root / day / f"{day}-fault_list.json"
        (tmp_path / day / src.name).write_text(src.read_text()[:200])  # cut mid-JSON
    rc = main(["eval", "trainticket", "--data", str(tmp_path), "--json", "--no-cache"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert "could not read the TrainTicket data" in captured.err
    json.dumps(captured.err)  # one line of text, no traceback object
