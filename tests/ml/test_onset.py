import numpy as np
import pytest

from ml.onset import elevated_level, onset_index, onset_order


def test_onset_is_the_start_of_the_excursion():
    s = np.array([0.1, 0.2, 0.1, 0.6, 0.8, 1.5, 3.0])
    assert onset_index(s, 0.5, 6) == 3
    assert onset_index(s, 0.05, 6) == 0  # never normal before: from the start
    assert onset_index(s, 2.0, 6) == 6  # the alarm itself


def test_gaps_inside_an_excursion_do_not_break_it_nor_start_it():
    s = np.array([0.1, np.nan, 0.9, np.nan, 0.9, 2.0])
    assert onset_index(s, 0.5, 5) == 2
    with pytest.raises(IndexError):
        onset_index(s, 0.5, 6)


def test_level_from_training_and_order():
    assert elevated_level(np.array([1.0, 2.0, 3.0, np.nan])) == 2.0
    assert onset_order({"b": 5.0, "a": 5.0, "c": 1.0}) == [("c", 1.0), ("a", 5.0), ("b", 5.0)]
