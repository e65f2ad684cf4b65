"""A small real run: two NAB files through the detectors and the scorer."""

from evaluation.nab_eval import evaluate_nab, folds

FILES = [
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "artificialWithAnomaly/art_daily_jumpsdown.csv",
]


def test_folds_alternate_within_each_category():
    names = ["a/1.csv", "a/2.csv", "a/3.csv", "b/1.csv"]
    assert folds(names) == (["a/1.csv", "a/3.csv", "b/1.csv"], ["a/2.csv"])


def test_two_files_end_to_end(nab_root):
    r = evaluate_nab(nab_root, FILES, progress=lambda _: None)
    assert r["files"] == 2
    # both jumps are found (each file has one window) and the result beats the null detector
    assert r["default_counts"]["windows"] == 2
    assert r["default_counts"]["windows_detected"] == 2
    assert r["default"]["standard"] > 0
    # out-of-fold: each file is scored with the setting chosen on the other one
    assert len(r["cv_settings"]["standard"]) == 2
    assert set(r["cv"]) == {"standard", "reward_low_FP", "reward_low_FN"}
    assert r["published"] == {}  # published figures only next to a whole-corpus run
    # window novelty is part of the setting; the sequence model alone is scored next to it
    assert r["default_setting"]["novelty_factor"] == 4.0
    assert set(r["sequence_model_alone"]["cv"]) == set(r["cv"])
    assert r["sequence_model_alone"]["default_counts"]["windows"] == 2
    # the streaming detector alone is scored from the same run, as the earlier baseline
    assert r["streaming_detector"]["default_counts"]["windows_detected"] == 2
    assert set(r["streaming_detector"]["cv"]) == set(r["cv"])
