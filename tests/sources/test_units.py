import pytest

from loop.sources.units import normalise_unit, units_agree


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("ms", "ms"),
        ("milliseconds", "ms"),
        ("1", "ratio"),
        ("Cel", "C"),
        ("{points}/s", "pts/s"),
        ("1/s", "req/s"),
        ("", "ms"),
        ("%", "%"),
    ],
)
def test_agreeing_units(sent, expected):
    assert units_agree(sent, expected)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("s", "ms"), ("%", "ratio"), ("1/h", "1/min"), ("By", "%"), ("kV", "V")],
)
def test_disagreeing_units(sent, expected):
    assert not units_agree(sent, expected)


def test_normalise():
    assert normalise_unit(" Seconds ") == "s"
    assert normalise_unit("{complaints}/h") == "complaints/h"
