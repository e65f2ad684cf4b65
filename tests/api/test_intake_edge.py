"""Every push intake of the API (JSON, Prometheus text, OTLP/HTTP JSON) over a real SQLite
token store and a real monitor: hostile targets refused and counted, a missing target and
true/false refused, cardinality limits per token, and /v1/intake, /v1/intake/sources and
/metrics telling the same story (every point sent is accounted for exactly once)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Auth, Role
from loop.monitor import Monitor
from loop.store import IncidentStore
from loop.windows import Limits
from rules.catalog import load_catalog

HOSTILE = ["{{ lookup('pipe','id > pwned.txt') }}", "evil\nline", "a;rm -rf", "${IFS}", "`id`"]


@pytest.fixture
def store(tmp_path):
    store = IncidentStore(f"sqlite:///{tmp_path / 'api.db'}")
    yield store
    store.close()


@pytest.fixture
def auth(store):
    return Auth.on(store.engine)


@pytest.fixture
def monitor():
    limits = Limits(series=50, targets=20, series_per_owner=6, targets_per_owner=3)
    return Monitor(load_catalog(), window_s=30, limits=limits)


@pytest.fixture
def client(store, auth, monitor):
    app = create_app(store, submit=monitor.ingest, stats=monitor.stats, auth=auth)
    with TestClient(app) as client:
        yield client


def bearer(auth: Auth, name: str, role: Role = Role.operator) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.tokens.create(name, role).token}"}


def sample(target: str | None, series="cache_hit_ratio", ts=None, value=0.5) -> dict:
    labels = {} if target is None else {"target": target}
    return {"series": series, "labels": labels, "ts": ts or time.time(), "value": value}


def text_line(target: str, series="cache_hit_ratio", value=0.5, ts=None) -> str:
    escaped = target.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{series}{{target="{escaped}"}} {value} {int((ts or time.time()) * 1000)}\n'


def otlp(target: str, series="cache_hit_ratio", attribute="service.instance.id") -> dict:
    point = {"timeUnixNano": str(time.time_ns()), "asDouble": 0.5}
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": attribute, "value": {"stringValue": target}}]},
                "scopeMetrics": [{"metrics": [{"name": series, "gauge": {"dataPoints": [point]}}]}],
            }
        ]
    }


def counters(client, headers) -> dict[str, int]:
    got = client.get("/v1/intake", headers=headers).json()["counters"]
    return {reason: n for reason, n in got.items() if n}


def test_hostile_targets_are_refused_and_counted_on_every_push_intake(client, auth, monitor):
    op = bearer(auth, "pusher")
    for target in HOSTILE:
        json_push = client.post("/v1/samples", json=[sample(target)], headers=op)
        assert json_push.status_code == 422
        assert [r["reason"] for r in json_push.json()["rejected"]] == ["bad_target"]
        text_push = client.post(
            "/v1/samples/prometheus",
            content=text_line(target),
            headers={**op, "content-type": "text/plain"},
        )
        assert text_push.status_code == 422
        assert [r["reason"] for r in text_push.json()["rejected"]] == ["bad_target"]
        for attribute in ("service.instance.id", "host.name"):
            otlp_push = client.post("/v1/metrics", json=otlp(target, attribute=attribute),
                                    headers=op)  # fmt: skip
            assert otlp_push.status_code == 400
            assert otlp_push.json()["partialSuccess"]["rejectedDataPoints"] == "1"
            assert "bad_target" in {r["reason"] for r in otlp_push.json()["rejected"]}
    assert monitor.targets() == [] and monitor.stats()["series"] == 0
    assert counters(client, op) == {"bad_target": 4 * len(HOSTILE)}
    exposition = client.get("/metrics", headers=op).text
    assert f'mendloop_intake_samples{{reason="bad_target"}} {4.0 * len(HOSTILE)}' in exposition


def test_newlines_in_other_labels_never_come_back_raw(client, auth):
    op = bearer(auth, "pusher")
    bad = sample("ok-1") | {"labels": {"target": "ok-1", "note": "forged\nINFO all good"}}
    answer = client.post("/v1/samples", json=[bad], headers=op).json()
    assert [r["reason"] for r in answer["rejected"]] == ["bad_labels"]
    assert "\n" not in answer["rejected"][0]["error"]


def test_a_sample_without_target_is_refused_not_filed_under_default(client, auth, monitor):
    op = bearer(auth, "pusher")
    answer = client.post("/v1/samples", json=[sample(None)], headers=op)
    assert answer.status_code == 422
    assert [r["reason"] for r in answer.json()["rejected"]] == ["bad_target"]
    assert monitor.targets() == [] and monitor.latest("default", "cache_hit_ratio") is None
    assert counters(client, op) == {"bad_target": 1}


def test_true_and_false_are_refused_as_values(client, auth, monitor):
    op = bearer(auth, "pusher")
    answer = client.post(
        "/v1/samples", json=[sample("a", value=True), sample("a", value=False)], headers=op
    )
    assert answer.status_code == 422
    assert [r["reason"] for r in answer.json()["rejected"]] == ["invalid", "invalid"]
    assert monitor.latest("a", "cache_hit_ratio") is None


def test_per_token_limits_refuse_new_names_with_counted_reasons(client, auth):
    flooder, other = bearer(auth, "flooder"), bearer(auth, "other")
    names = ["cache_hit_ratio", *[n for n in load_catalog() if n != "cache_hit_ratio"][:3]]
    now = time.time()
    # 3 targets allowed per token: the 4th target is refused
    first = client.post("/v1/samples", json=[sample(f"t{i}", ts=now) for i in range(4)],
                        headers=flooder).json()  # fmt: skip
    assert first["accepted"] == 3
    assert [(r["index"], r["reason"]) for r in first["rejected"]] == [(3, "token_target_limit")]
    # 6 series allowed per token: 3 more fit, the rest are refused
    batch = [sample(t, s, ts=now) for t in ("t0", "t1") for s in names[1:]]
    more = client.post("/v1/samples", json=batch, headers=flooder).json()
    assert more["accepted"] == 3
    assert {r["reason"] for r in more["rejected"]} == {"token_series_limit"}
    # the same limits through the text intake; existing series keep flowing
    text = text_line("t0", ts=now + 1) + text_line("t9", ts=now + 1)
    pushed = client.post("/v1/samples/prometheus", content=text,
                         headers={**flooder, "content-type": "text/plain"}).json()  # fmt: skip
    assert pushed["accepted"] == 1 and [r["reason"] for r in pushed["rejected"]] == [
        "token_target_limit"
    ]
    # another token is not held by the flooder's limits
    assert client.post("/v1/samples", json=[sample("t9", ts=now)], headers=other).json()[
        "accepted"
    ] == 1
    got = counters(client, other)
    assert (got["token_target_limit"], got["token_series_limit"]) == (2, 3)


def test_global_limits_refuse_new_names_of_any_token(client, auth, monitor):
    op = bearer(auth, "a")
    now = time.time()
    for i in range(7):  # 20 targets in all: 7 tokens x 3 targets = 21 offered
        token = bearer(auth, f"tok{i}")
        client.post("/v1/samples", json=[sample(f"g{i}-{j}", ts=now) for j in range(3)],
                    headers=token)  # fmt: skip
    stats = client.get("/v1/intake", headers=op).json()
    assert stats["targets"] == 20 and stats["counters"]["target_limit"] == 1
    assert stats["limits"] == {"series": 50, "targets": 20, "series_per_token": 6,
                               "targets_per_token": 3}  # fmt: skip
    assert len(monitor.targets()) == 20


def test_intake_and_sources_agree_with_the_docs(client, auth):
    """Each point sent is counted once in /v1/intake; /v1/intake/sources is the part the
    parsers refused (inside /v1/intake, not added to it), as docs/API.md says."""
    op = bearer(auth, "pusher")
    now_ms = int(time.time() * 1000)
    text = (
        f'cache_hit_ratio{{target="a"}} 0.9 {now_ms}\n'  # accepted
        f'cache_hit_ratio{{target="a"}} 0.9 {now_ms}\n'  # duplicate
        "this is not exposition\n"  # parse_error
        f'no_such_metric{{target="a"}} 1 {now_ms}\n'  # unknown_metric (the monitor's)
        f'cache_hit_ratio{{target="{{{{x}}}}"}} 1 {now_ms}\n'  # bad_target (the parser's)
    )
    answer = client.post("/v1/samples/prometheus", content=text,
                         headers={**op, "content-type": "text/plain"}).json()  # fmt: skip
    assert answer["accepted"] + answer["stale"] + answer["rejected_points"] == 5
    intake = counters(client, op)
    sources = client.get("/v1/intake/sources", headers=op).json()
    assert sources == {"bad_target": 1, "parse_error": 1}
    assert intake == {
        "accepted": 1,
        "duplicate": 1,
        "parse_error": 1,
        "unknown_metric": 1,
        "bad_target": 1,
    }
    assert sum(intake.values()) == 5  # sent = accepted + stale + refused, once each
    assert all(intake[reason] >= n for reason, n in sources.items())
    api_md = (Path(__file__).resolve().parents[2] / "docs" / "API.md").read_text()
    row = next(line for line in api_md.splitlines() if "`GET /v1/intake/sources`" in line)
    assert "included in `GET /v1/intake`" in row
