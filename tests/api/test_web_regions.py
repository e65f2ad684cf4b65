"""The region rule of the web page (api/web.py, pure): an area is hot when its complaint
rate exceeds 1.5x the mean of the monitored station areas of its city, else its province,
else all of them (itself included)."""

from __future__ import annotations

import pytest

from api.web import area_rates, judge_areas, region_tree
from kernel.domain import Domain

A1 = ("P", "C1", "D1", "a1")
A2 = ("P", "C1", "D2", "a2")
B1 = ("P", "C2", "D3", "b1")
Q1 = ("Q", "C3", "D4", "q1")


def verdicts(rates, factor=1.5):
    return {a.path: a for a in judge_areas(rates, factor)}


def test_city_peers_first_with_the_area_itself_in_the_mean() -> None:
    judged = verdicts({A1: 40.0, A2: 10.0, B1: 1000.0})
    assert judged[A1].region == ("P", "C1")  # its city has another monitored area
    assert judged[A1].regional_mean == pytest.approx(25.0)
    assert judged[A1].ratio == pytest.approx(1.6) and judged[A1].hot
    assert judged[A2].ratio == pytest.approx(0.4) and not judged[A2].hot


def test_exactly_1_5x_is_not_hot_just_above_is() -> None:
    # a = 1.5 x (a + b) / 2  <=>  a = 3b
    assert not verdicts({A1: 30.0, A2: 10.0})[A1].hot
    assert verdicts({A1: 30.01, A2: 10.0})[A1].hot


def test_alone_in_its_city_it_is_compared_within_its_province_then_all() -> None:
    judged = verdicts({A1: 10.0, B1: 50.0, Q1: 10.0})
    assert judged[B1].region == ("P",)  # C2 has no other area; P has A1 and B1
    assert judged[B1].regional_mean == pytest.approx(30.0) and judged[B1].hot  # 1.67x
    assert judged[Q1].region == ()  # Q has no other monitored area: all of them
    assert judged[Q1].regional_mean == pytest.approx(70.0 / 3)


def test_nothing_to_compare_with_and_nothing_reported() -> None:
    lone = verdicts({A1: 99.0})[A1]
    assert lone.regional_mean is None and lone.ratio is None and not lone.hot
    quiet = verdicts({A1: 0.0, A2: 0.0})[A1]
    assert quiet.ratio is None and not quiet.hot  # a mean of 0 has no ratio
    assert judge_areas({}) == []


def test_factor_is_a_parameter() -> None:
    assert verdicts({A1: 12.0, A2: 8.0}, factor=1.1)[A1].hot
    assert not verdicts({A1: 12.0, A2: 8.0})[A1].hot


def test_targets_of_one_area_add_up_and_unplaced_targets_are_left_out() -> None:
    placement = {"t1": A1, "t2": A1, "t3": A2, "odd": ("P",)}
    rates, members = area_rates(placement, {"t1": 5.0, "t2": 7.0, "t3": 2.0, "x": 9.0, "odd": 1})
    assert rates == {A1: 12.0, A2: 2.0}
    assert members == {A1: ["t1", "t2"], A2: ["t3"]}


def test_the_tree_of_domain_yaml_marks_a_hot_area_and_its_parents() -> None:
    domain = Domain.load()
    # pm-site-1 (Hangzhou) and pm-site-2 (Ningbo) are both in Zhejiang: compared there
    tree = region_tree(domain, {"pm-site-1": 40.0, "pm-site-2": 11.0, "pm-site-3": 11.0, "z": 3})
    assert tree["hot"] == ["Zhejiang > Hangzhou > Xihu > xihu-sa-01"]
    assert tree["unplaced"] == ["z"]
    zhejiang = next(p for p in tree["provinces"] if p["name"] == "Zhejiang")
    assert zhejiang["hot"]
    hangzhou = next(c for c in zhejiang["cities"] if c["name"] == "Hangzhou")
    xihu = next(d for d in hangzhou["districts"] if d["name"] == "Xihu")
    area = {a["name"]: a for a in xihu["areas"]}
    assert area["xihu-sa-01"]["hot"] and area["xihu-sa-01"]["targets"] == ["pm-site-1"]
    assert area["xihu-sa-01"]["region"] == "Zhejiang"
    assert area["xihu-sa-01"]["ratio"] == pytest.approx(40 / 25.5)
    assert area["xihu-sa-02"] == {"name": "xihu-sa-02", "monitored": False}
    jiangsu = next(p for p in tree["provinces"] if p["name"] == "Jiangsu")
    assert not jiangsu["hot"]
