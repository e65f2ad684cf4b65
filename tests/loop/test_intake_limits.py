"""The monitor's door against hostile names and floods: one identifier pattern for
targets and label names (kernel/ids.py), label values that cannot break a log, true/false
refused as values, and bounded cardinality (live series and targets, in all and per token),
each refusal counted by reason so that sent = accepted + late + duplicate + refused."""

import math

import numpy as np
import pytest

from kernel.ids import is_identifier, label_problem, loggable
from kernel.models import Sample
from loop.monitor import COUNTED, Monitor
from loop.windows import Limits, WindowStore
from rules.catalog import load_catalog

NOW = 10_000.0
HOSTILE_TARGETS = [
    "{{ lookup('pipe','id') }}",
    "{% for x in y %}",
    "a\nb",
    "a\rb",
    "tab\there",
    "a b",
    "$(id)",
    "${HOME}",
    "`id`",
    "a|b",
    "a;b",
    "a&b",
    "50%",
    "'quoted'",
    '"quoted"',
    "-rf",
    ".hidden",
    "../etc",
    "a/b",
    "a\\b",
    "a=b",
    "caf\u00e9",
    "line\u2028sep",
    "nul\x00",
    "",
    "x" * 201,
]
REAL_TARGETS = [
    "pm-site-1",
    "10.0.0.7:9100",
    "[::1]:9100",
    "[2001:db8::1]",
    "web-0.shop.svc.cluster.local",
    "db_primary",
    "host.example.com:443",
    "checkout-7f9c8d5b4-x2kq9",
    "x" * 200,
]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def raw(target="t1", series="cache_hit_ratio", ts=NOW, value=0.9, **labels):
    return {"series": series, "labels": {"target": target, **labels}, "ts": ts, "value": value}


def counted(monitor: Monitor) -> int:
    """Every point the monitor has an account of: taken, stale or refused."""
    counters = monitor.stats()["counters"]
    return sum(n for reason, n in counters.items() if reason != "expired_series")


@pytest.mark.parametrize("target", REAL_TARGETS)
def test_names_real_estates_use_are_identifiers(target):
    assert is_identifier(target)
    assert label_problem({"target": target}) is None


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_hostile_targets_are_refused_counted_and_never_stored(catalog, target):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW)
    result = monitor.ingest([raw(target), raw("good")])
    assert result.accepted == 1
    assert [(r.index, r.reason) for r in result.rejected] == [(0, "bad_target")]
    assert "\n" not in result.rejected[0].error and "\u2028" not in result.rejected[0].error
    assert monitor.targets() == ["good"]
    assert monitor.stats()["counters"]["bad_target"] == 1
    assert counted(monitor) == 2


def test_a_sample_built_without_validation_is_checked_at_the_door(catalog):
    """The twin builds Samples without validation for speed: the monitor checks again."""
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW)
    sneaked = Sample.model_construct(
        series="cache_hit_ratio", labels={"target": "{{ 7*7 }}"}, ts=NOW, value=1.0
    )
    no_labels = Sample.model_construct(series="cache_hit_ratio", labels=None, ts=NOW, value=1.0)
    result = monitor.ingest([sneaked, no_labels])
    assert [r.reason for r in result.rejected] == ["bad_target", "bad_labels"]
    assert monitor.targets() == []


def test_label_values_with_control_characters_and_bad_label_names_are_refused(catalog):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW)
    result = monitor.ingest(
        [
            raw(note="line\ninjected"),
            raw(note="\x1b[31mred"),
            {"series": "cache_hit_ratio", "labels": {"target": "t1", "bad key": "v"},
             "ts": NOW, "value": 1},
            raw(note="x" * 2000),
            {"series": "cache_hit_ratio", "labels": {"target": "t1", **{f"l{i}": "v" for i in
             range(40)}}, "ts": NOW, "value": 1},
            raw(note="free text, with spaces & {braces} is fine"),
        ]
    )  # fmt: skip
    assert [(r.index, r.reason) for r in result.rejected] == [(i, "bad_labels") for i in range(5)]
    assert result.accepted == 1
    assert all("\n" not in r.error and "\x1b" not in r.error for r in result.rejected)
    assert "\\n" in result.rejected[0].error  # shown escaped, so a person sees what was sent
    assert monitor.stats()["counters"]["bad_labels"] == 5


def test_true_and_false_are_not_numbers(catalog):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW)
    result = monitor.ingest([raw(value=True), raw(value=False), raw(ts=True), raw(value=1)])
    assert [(r.index, r.reason) for r in result.rejected] == [
        (0, "invalid"),
        (1, "invalid"),
        (2, "invalid"),
    ]
    assert "valid number" in result.rejected[0].error
    assert monitor.latest("t1", "cache_hit_ratio") == (NOW, 1.0)


def test_a_missing_target_is_refused_not_filed_under_default(catalog):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW)
    result = monitor.ingest(
        [{"series": "cache_hit_ratio", "ts": NOW, "value": 1.0},
         {"series": "cache_hit_ratio", "labels": {}, "ts": NOW, "value": 1.0}]
    )  # fmt: skip
    assert [r.reason for r in result.rejected] == ["bad_target", "bad_target"]
    assert monitor.targets() == [] and monitor.latest("default", "cache_hit_ratio") is None


def test_loggable_escapes_and_cuts():
    assert loggable("a\nb") == "'a\\nb'"
    assert loggable("x" * 100, limit=5) == "'xxxxx...(+95 chars)'"


# -- cardinality ----------------------------------------------------------------------


def series_of(catalog, n):
    return list(catalog)[:n]


def test_new_series_past_the_limit_are_refused_existing_ones_keep_flowing(catalog):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW, limits=Limits(series=3))
    names = series_of(catalog, 5)
    first = monitor.ingest([raw(series=s, ts=NOW - 5) for s in names])
    assert first.accepted == 3
    refused = [(r.index, r.reason) for r in first.rejected]
    assert refused == [(3, "series_limit"), (4, "series_limit")]
    again = monitor.ingest([raw(series=s, ts=NOW - 4) for s in names])
    assert again.accepted == 3 and [r.reason for r in again.rejected] == ["series_limit"] * 2
    stats = monitor.stats()
    assert stats["series"] == 3 and stats["counters"]["series_limit"] == 4
    assert counted(monitor) == 10


def test_new_targets_past_the_limit_are_refused(catalog):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW, limits=Limits(targets=2))
    names = series_of(catalog, 2)
    result = monitor.ingest([raw(t, series=s) for t in ("a", "b", "c") for s in names])
    assert result.accepted == 4
    refused = [(r.index, r.reason) for r in result.rejected]
    assert refused == [(4, "target_limit"), (5, "target_limit")]
    # a new series of a known target is no new target
    more = monitor.ingest([raw("a", series=series_of(catalog, 3)[2])])
    assert more.accepted == 1 and monitor.targets() == ["a", "b"]


def test_per_token_limits_refuse_only_that_tokens_new_names(catalog):
    limits = Limits(series_per_owner=2, targets_per_owner=2)
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW, limits=limits)
    names = series_of(catalog, 3)
    flood = monitor.ingest([raw("a", series=s) for s in names], owner="tok1")
    assert flood.accepted == 2 and [r.reason for r in flood.rejected] == ["token_series_limit"]
    # the token's targets: "a" holds both of its series, so a new target is over its series
    targets = monitor.ingest([raw(t, series=names[0], ts=NOW + 1) for t in ("b", "c")],
                             owner="tok2")  # fmt: skip
    assert targets.accepted == 2
    third = monitor.ingest([raw("d", series=names[0], ts=NOW + 1)], owner="tok2")
    assert [r.reason for r in third.rejected] == ["token_target_limit"]
    # another token is not held by tok1's limit, and tok1's existing series keep flowing
    other = monitor.ingest([raw("a", series=names[2], ts=NOW + 2)], owner="tok3")
    kept = monitor.ingest([raw("a", series=s, ts=NOW + 3) for s in names[:2]], owner="tok1")
    assert other.accepted == 1 and kept.accepted == 2
    assert monitor.owner_usage("tok1") == (2, 1) and monitor.owner_usage("tok2") == (2, 2)
    counters = monitor.stats()["counters"]
    assert (counters["token_series_limit"], counters["token_target_limit"]) == (1, 1)


def test_expired_series_make_room_again_and_free_their_tokens_counts(catalog):
    clock = [NOW]
    limits = Limits(series=2, targets=2, series_per_owner=2, targets_per_owner=2)
    monitor = Monitor(catalog, window_s=10, clock=lambda: clock[0], expire_after_s=60,
                      limits=limits)  # fmt: skip
    assert monitor.ingest([raw("a"), raw("b")], owner="tok").accepted == 2
    assert monitor.ingest([raw("c")], owner="tok").rejected[0].reason == "token_target_limit"
    clock[0] = NOW + 100
    assert monitor.expire() == 2
    assert monitor.owner_usage("tok") == (0, 0) and monitor.targets() == []
    assert monitor.ingest([raw("c", ts=NOW + 100)], owner="tok").accepted == 1


def test_a_flood_of_new_names_leaves_memory_at_the_bound(catalog):
    limit = 1_000
    monitor = Monitor(catalog, window_s=60, clock=lambda: NOW, max_batch=10**6,
                      limits=Limits(series=limit))  # fmt: skip
    monitor.ingest([raw(f"flood-{i}") for i in range(limit)])
    at_limit = monitor.stats()["window_bytes"]
    assert at_limit == limit * 60 * 16  # the arrays stop growing exactly at the bound
    result = monitor.ingest([raw(f"flood-{i}") for i in range(limit, 20 * limit)])
    assert result.accepted == 0 and len(result.rejected) == 19 * limit
    stats = monitor.stats()
    assert stats["window_bytes"] == at_limit and stats["series"] == limit
    assert stats["counters"]["series_limit"] == 19 * limit


def test_window_store_growth_is_capped_by_the_series_limit():
    store = WindowStore(capacity=4, initial_slots=2, limits=Limits(series=5))
    slots = store.slots_for([f"t{i}" for i in range(8)], ["x"] * 8)
    assert slots.tolist()[:5] == [0, 1, 2, 3, 4] and (slots[5:] < 0).all()
    assert store.nbytes == 5 * 4 * 16


def test_columns_path_refuses_bad_targets_and_new_series_past_limits(catalog):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW, limits=Limits(series=2))
    targets = ["a", "a", "a", "{{ 7*7 }}"]
    series = [*series_of(catalog, 3), series_of(catalog, 1)[0]]
    layout = monitor.layout(targets, series)
    for tick in range(2):
        result = monitor.ingest_columns(layout, ts=np.full(4, NOW - 5 + tick), values=np.ones(4))
        assert result.accepted == 2
        assert sorted((r.index, r.reason) for r in result.rejected) == [
            (2, "series_limit"),
            (3, "bad_target"),
        ]
    counters = monitor.stats()["counters"]
    assert (counters["series_limit"], counters["bad_target"]) == (2, 2)
    assert monitor.targets() == ["a"]


def test_refusals_a_source_made_are_booked_with_the_push(catalog):
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW)
    monitor.ingest([raw()], refused={"parse_error": 2, "bad_unit": 1, "something_new": 1})
    counters = monitor.stats()["counters"]
    assert (counters["parse_error"], counters["bad_unit"], counters["something_new"]) == (2, 1, 1)
    assert counted(monitor) == 5
    assert set(COUNTED) <= set(counters)


def test_every_point_sent_is_accounted_for(catalog):
    """sent = accepted + late + duplicate + refused, over a mix of everything."""
    monitor = Monitor(catalog, window_s=10, clock=lambda: NOW, max_batch=50,
                      limits=Limits(series=3, series_per_owner=2))  # fmt: skip
    batches = [
        [raw(), raw(), raw(ts=NOW - 1), raw("{{x}}"), raw(value=math.nan), raw(value=True)],
        [raw(series=s) for s in series_of(catalog, 4)],
        [raw(f"n{i}") for i in range(5)],
        [raw()] * 51,  # refused whole
        ["not a sample", {"series": "nope"}, raw(note="a\nb")],
    ]
    sent = 0
    for batch in batches:
        monitor.ingest(batch, owner="tok")
        sent += len(batch)
    assert counted(monitor) == sent
