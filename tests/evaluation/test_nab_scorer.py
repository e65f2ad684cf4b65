"""The NAB scorer on hand-made files whose score is computed here by hand, and against the
published NAB results."""

import json
import math

import numpy as np
import pytest

from evaluation.nab import (
    FileLayout,
    NabFile,
    Profile,
    corpus_score,
    load_corpus,
    load_profiles,
    normalised,
    null_score,
    perfect_score,
    probation_length,
    published_per_file,
    published_totals,
    score_file,
)

STANDARD = Profile("standard", 1.0, 0.11, 1.0)
LOW_FN = Profile("reward_low_FN", 1.0, 0.11, 2.0)
T0 = np.datetime64("2020-01-01T00:00:00", "ms")
STEP = np.timedelta64(300_000, "ms")


def sigmoid(y: float) -> float:
    """NAB's scaled sigmoid written independently: 2/(1+e^(5y)) - 1 = -tanh(5y/2)."""
    return -math.tanh(2.5 * y)


def make_file(n: int, windows: list[tuple[int, int]]) -> FileLayout:
    ts = T0 + STEP * np.arange(n)
    wins = tuple((ts[a], ts[b]) for a, b in windows)
    return FileLayout.build(NabFile("x/f.csv", ts, np.zeros(n), wins))


def det(n: int, *rows: int) -> np.ndarray:
    d = np.zeros(n, dtype=bool)
    d[list(rows)] = True
    return d


# 100 rows: probation = 15 rows; one window over rows 40..49 (width 10)
LAYOUT = make_file(100, [(40, 49)])
MAX_TP = sigmoid(-1.0)


def test_probation_is_15_percent_capped_at_750_rows():
    assert probation_length(100) == 15
    assert probation_length(4032) == 604
    assert probation_length(22695) == 750


def test_detection_at_the_window_start_earns_the_full_tp_weight():
    s = score_file(LAYOUT, det(100, 40), STANDARD)
    assert s.raw == pytest.approx(1.0)
    assert (s.tp, s.fn, s.fp) == (1, 0, 0)


def test_only_the_earliest_detection_in_a_window_counts():
    late_only = score_file(LAYOUT, det(100, 49), STANDARD).raw
    assert late_only == pytest.approx(sigmoid(-0.1) / MAX_TP)  # 0.2482
    assert late_only == pytest.approx(0.248242, abs=1e-6)
    both = score_file(LAYOUT, det(100, 45, 49), STANDARD).raw
    assert both == pytest.approx(sigmoid(-0.5) / MAX_TP)


def test_false_positives_before_and_after_the_window():
    # before any window: the full FP weight
    assert score_file(LAYOUT, det(100, 20, 40), STANDARD).raw == pytest.approx(1.0 - 0.11)
    # right after: position 1/(width-1) past the window, a small penalty
    after = score_file(LAYOUT, det(100, 40, 50), STANDARD).raw
    assert after == pytest.approx(1.0 + 0.11 * sigmoid(1 / 9))
    assert after == pytest.approx(1.0 - 0.029793, abs=1e-6)  # 0.11*tanh(5/18)
    # more than 3 window widths after: the full weight again
    assert score_file(LAYOUT, det(100, 40, 90), STANDARD).raw == pytest.approx(0.89)


def test_probation_rows_are_not_scored_and_misses_cost_the_fn_weight():
    assert score_file(LAYOUT, det(100, 5), STANDARD).raw == pytest.approx(-1.0)
    assert score_file(LAYOUT, det(100), LOW_FN).raw == pytest.approx(-2.0)
    # a window wholly inside the probationary period is not scored at all
    early = make_file(100, [(2, 8), (40, 49)])
    assert early.scored == (1,)
    assert null_score(early, STANDARD) == -1.0 and perfect_score(early, STANDARD) == 1.0


def test_corpus_normalisation():
    two = make_file(200, [(60, 79), (150, 169)])
    # standard: null -3, perfect 3; one perfect hit, one miss, one far FP: raw = 1 - 1 - 0.11
    norm, per = corpus_score([LAYOUT, two], [det(100, 40), det(200, 60, 120)], STANDARD)
    raw = 1.0 + (1.0 - 1.0 + 0.11 * sigmoid((120 - 79) / 19))
    assert sum(p.raw for p in per) == pytest.approx(raw)
    assert norm == pytest.approx(100 * (raw + 3) / 6)
    assert normalised(-3, -3, 3) == 0 and normalised(3, -3, 3) == 100


def test_null_detector_matches_the_published_per_file_scores(nab_root):
    profiles = load_profiles(nab_root)
    published = published_per_file(nab_root, "null", "standard")
    for f in load_corpus(nab_root):
        lay = FileLayout.build(f)
        s = score_file(lay, np.zeros(lay.n_rows, dtype=bool), profiles["standard"])
        assert s.raw == pytest.approx(published[f.name]["score"]), f.name


def test_published_totals_normalise_to_the_published_scoreboard(nab_root):
    """Our null and perfect scores turn every published detector's raw total into its
    published normalised score (random is left out: its CSVs cover only some files)."""
    layouts = [FileLayout.build(f) for f in load_corpus(nab_root)]
    profiles = load_profiles(nab_root)
    board = json.loads((nab_root / "results" / "final_results.json").read_text())
    keys = {
        "standard": "standard",
        "reward_low_FP": "reward_low_FP_rate",
        "reward_low_FN": "reward_low_FN_rate",
    }
    checked = 0
    for detector in sorted(set(board) - {"random"}):
        for short, prof in profiles.items():
            raw = published_totals(nab_root, detector, short)
            null = sum(null_score(lay, prof) for lay in layouts)
            perfect = sum(perfect_score(lay, prof) for lay in layouts)
            assert normalised(raw, null, perfect) == pytest.approx(
                board[detector][keys[short]], abs=1e-6
            )
            checked += 1
    assert checked == 3 * 14  # 14 detectors (null included, random left out), 3 profiles
