import pytest

from knowledge.similarity import (
    combined_similarity,
    cosine_from_index_score,
    overlap,
    solution_score,
    structured_agreement,
)


def test_index_score_maps_back_to_cosine():
    assert cosine_from_index_score(1.0) == 1.0
    assert cosine_from_index_score(0.5) == 0.0
    assert cosine_from_index_score(0.0) == -1.0


def test_overlap_is_containment():
    assert overlap({"a", "b"}, {"a", "b", "c", "d"}) == 1.0
    assert overlap({"a", "x"}, {"a", "b", "c"}) == 0.5
    assert overlap([], ["a"]) == 0.0


def test_structured_agreement_uses_only_what_both_sides_have():
    assert structured_agreement("f", (), "f", ()) == 1.0
    assert structured_agreement("f", ("a",), "g", ("a",)) == 0.5
    assert structured_agreement(None, (), "f", ("a",)) is None


def test_combined_falls_back_to_text_alone():
    assert combined_similarity(0.9, None, (), "f", ("a",)) == 0.9
    assert combined_similarity(-0.2, None, (), "", ()) == 0.0


def test_same_fault_and_symptoms_lift_a_paraphrase_over_a_look_alike():
    same = combined_similarity(
        0.62, "cache_saturation", ("a", "b"), "cache_saturation", ("a", "b", "c")
    )
    look_alike = combined_similarity(0.62, "cache_saturation", ("a", "b"), "db_io_wait", ("c", "d"))
    assert same == pytest.approx(0.5 * 0.62 + 0.5)
    assert look_alike == pytest.approx(0.5 * 0.62)


def test_solution_score_prefers_low_risk_and_track_record():
    assert solution_score(0.9, 0.9, "low") > solution_score(0.9, 0.9, "high")
    assert solution_score(0.9, 0.9, "medium") > solution_score(0.9, 0.5, "medium")
    assert solution_score(0.9, 0.9, "unknown") == solution_score(0.9, 0.9, "high")
