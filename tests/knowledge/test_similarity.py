import pytest

from knowledge.similarity import (
    combined_similarity,
    cosine_from_index_score,
    jaccard,
    solution_score,
)


def test_index_score_maps_back_to_cosine():
    assert cosine_from_index_score(1.0) == 1.0
    assert cosine_from_index_score(0.5) == 0.0
    assert cosine_from_index_score(0.0) == -1.0


def test_jaccard():
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard([], []) == 0.0


def test_combined_uses_symptoms_only_when_both_sides_have_them():
    assert combined_similarity(0.9, (), ("a",)) == 0.9
    assert combined_similarity(0.9, ("a",), ("a",)) == pytest.approx(0.7 * 0.9 + 0.3)
    assert combined_similarity(-0.2, (), ()) == 0.0


def test_solution_score_prefers_low_risk_and_track_record():
    assert solution_score(0.9, 0.9, "low") > solution_score(0.9, 0.9, "high")
    assert solution_score(0.9, 0.9, "medium") > solution_score(0.9, 0.5, "medium")
    assert solution_score(0.9, 0.9, "unknown") == solution_score(0.9, 0.9, "high")
