"""The hybrid similarity is pure: features, the calibrated combination, solution ranking."""

import pytest

from knowledge.similarity import (
    Calibration,
    MatchFeatures,
    MatchQuery,
    cosine_from_index_score,
    match_features,
    overlap,
    solution_score,
)


def test_index_score_maps_back_to_cosine():
    assert cosine_from_index_score(1.0) == 1.0
    assert cosine_from_index_score(0.5) == 0.0
    assert cosine_from_index_score(0.0) == -1.0


def test_overlap_is_containment_and_unknown_when_a_side_is_empty():
    assert overlap({"a", "b"}, {"a", "b", "c", "d"}) == 1.0
    assert overlap({"a", "x"}, {"a", "b", "c"}) == 0.5
    assert overlap([], ["a"]) is None


def features(
    query,
    cosine=0.6,
    fault="cache_saturation",
    symptoms=("a:high",),
    device="",
    component="cache",
    env=(),
):
    return match_features(query, cosine, fault, symptoms, device, component, env)


def test_features_know_what_each_side_carries():
    bare = features(MatchQuery(text="t"))
    assert (bare.fault, bare.symptoms, bare.device, bare.environment) == (None,) * 4
    full = features(
        MatchQuery(
            text="t",
            fault="cache_saturation",
            symptom_keys=("a:high", "b:low"),
            device_type="redis-cluster",
            component="cache",
            environment=("load=peak",),
        ),
        symptoms=("a:high",),
        device="ehcache",
        env=("load=peak", "season=summer"),
    )
    assert full == MatchFeatures(text=0.6, fault=1.0, symptoms=1.0, device=0.5, environment=1.0)
    other = features(MatchQuery(text="t", fault="db_io_wait"), cosine=-0.3)
    assert other.fault == 0.0 and other.text == 0.0


def test_committed_calibration_puts_fault_and_symptom_agreement_over_the_bar():
    calibration = Calibration.load()
    same = MatchFeatures(text=0.55, fault=1.0, symptoms=1.0)
    look_alike = MatchFeatures(text=0.55, fault=0.0, symptoms=1.0)
    assert calibration.score(same) >= 0.8 > calibration.score(look_alike)
    # an unknown feature is no evidence either way: between agreement and disagreement
    unknown = MatchFeatures(text=0.55, symptoms=1.0)
    assert calibration.score(look_alike) < calibration.score(unknown) < calibration.score(same)
    assert all(w > 0 for w in calibration.weights.values())


def test_calibration_round_trips_through_json(tmp_path):
    calibration = Calibration(
        bias=-1.0,
        weights={"text": 2.0, "fault": 3.0, "symptoms": 1.0, "device": 0.5, "environment": 0.5},
    )
    calibration.save(tmp_path / "c.json")
    loaded = Calibration.load(tmp_path / "c.json")
    assert loaded == calibration
    assert loaded.score(MatchFeatures(text=0.5)) == pytest.approx(0.5)  # -1 + 2 x 0.5 = 0


def test_solution_score_prefers_low_risk_and_track_record():
    assert solution_score(0.9, 0.9, "low") > solution_score(0.9, 0.9, "high")
    assert solution_score(0.9, 0.9, "medium") > solution_score(0.9, 0.5, "medium")
    assert solution_score(0.9, 0.9, "unknown") == solution_score(0.9, 0.9, "high")
