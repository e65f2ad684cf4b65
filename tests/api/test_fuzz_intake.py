"""Property-based tests (Hypothesis) of every push intake: JSON samples, Prometheus text and
OTLP/HTTP JSON, over a real SQLite token store and a real monitor with small limits.

For any request, whatever it holds: the answer is never a 500; every point sent is
accounted for exactly once (accepted, stale, or refused under a counted reason); and
nothing that could be read as a template, a shell word or a log line break ever becomes a
target or a label name (every live target is an identifier of ``kernel.ids``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.auth import Auth, Role
from kernel.ids import is_identifier
from loop.monitor import Monitor
from loop.sources.promtext import BLANKS
from loop.store import IncidentStore
from loop.windows import Limits
from rules.catalog import load_catalog

CATALOG = load_catalog()
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# what an attacker or a broken exporter might send as a name or a value
HOSTILE = st.sampled_from(
    [
        "{{ lookup('pipe','id > pwned.txt') }}",
        "{% for x in range(9) %}x{% endfor %}",
        "${IFS}cat${IFS}/etc/passwd",
        "`id`",
        "$(touch /tmp/x)",
        "a;rm -rf /",
        "evil\nline",
        "tab\there",
        "\u2028sep",
        "../../etc/passwd",
        "-rf",
        ".hidden",
        "",
        " ",
        "x" * 201,
        "ok-target",
        "10.0.0.7:9100",
        "[::1]:9100",
        "web-0.shop_eu",
    ]
)
NAMES = st.one_of(
    HOSTILE, st.text(max_size=40), st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
)


SERIES = st.one_of(st.sampled_from(sorted(CATALOG)[:40]), NAMES)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
)
# seconds from now (resolved when the request is sent), or something that is not a time
TS = st.one_of(
    st.floats(min_value=-30, max_value=5).map(lambda d: ("offset", d)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: ("raw", v)),
    st.sampled_from([True, False, None, "now", "1700000000"]).map(lambda v: ("raw", v)),
)
LABELS = st.dictionaries(NAMES, NAMES, max_size=4)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[TestClient, Monitor, dict[str, str]]]:
    store = IncidentStore(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'api.db'}")
    auth = Auth.on(store.engine)
    monitor = Monitor(
        CATALOG,
        window_s=30,
        limits=Limits(series=300, targets=40, series_per_owner=200, targets_per_owner=25),
    )
    app = create_app(store, submit=monitor.ingest, stats=monitor.stats, auth=auth)
    headers = {"Authorization": f"Bearer {auth.tokens.create('fuzzer', Role.operator).token}"}
    with TestClient(app) as client:
        yield client, monitor, headers
    store.close()


def booked(client: TestClient, headers: dict[str, str]) -> int:
    """Every point the intake has accounted for so far, under any reason."""
    counters = client.get("/v1/intake", headers=headers).json()["counters"]
    return sum(n for reason, n in counters.items() if reason != "expired_series")


def assert_names_are_identifiers(monitor: Monitor) -> None:
    for target in monitor.targets():
        assert is_identifier(target), repr(target)


def resolve_ts(ts: tuple[str, Any]) -> Any:
    kind, value = ts
    return time.time() + value if kind == "offset" else value


def with_target(sample: dict[str, Any]) -> dict[str, Any]:
    """The optional generated ``target`` moved into the labels (where the API reads it)."""
    target = sample.pop("target", None)
    if target is None:
        return sample
    return sample | {"labels": sample["labels"] | {"target": target}}


@FUZZ
@given(
    batch=st.lists(
        st.fixed_dictionaries(
            {"series": SERIES, "labels": LABELS, "ts": TS, "value": VALUES},
            optional={"target": NAMES},
        ).map(with_target),
        max_size=12,
    ),
    wrapped=st.booleans(),
)
def test_json_samples_every_point_is_accounted_for_once(site, batch, wrapped) -> None:
    client, monitor, headers = site
    samples = [s | {"ts": resolve_ts(s["ts"])} for s in batch]
    body = json.dumps({"samples": samples} if wrapped else samples, allow_nan=True)
    before = booked(client, headers)
    answer = client.post(
        "/v1/samples", content=body, headers=headers | {"Content-Type": "application/json"}
    )
    assert answer.status_code < 500, answer.text
    assert booked(client, headers) - before == len(samples)
    if answer.status_code == 200:
        out = answer.json()
        assert out["accepted"] + out["stale"] + len(out["rejected"]) == len(samples)
    assert_names_are_identifiers(monitor)


def _label_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


TEXT_VALUE = st.one_of(st.floats(), st.sampled_from(["NaN", "+Inf", "x", "", "1e999"]))
TEXT_POINT = st.tuples(SERIES, LABELS, TEXT_VALUE)
GARBAGE_LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),
    min_size=1,
    max_size=60,
).filter(lambda line: line.strip() and not line.lstrip().startswith("#"))


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            TEXT_POINT.map(
                lambda p: (
                    p[0]
                    + "{"
                    + ",".join(f'{k}="{_label_text(v)}"' for k, v in p[1].items())
                    + "} "
                    + (p[2] if isinstance(p[2], str) else repr(p[2]))
                )
            ),
            GARBAGE_LINE,
        ),
        max_size=12,
    )
)
def test_prometheus_text_every_line_is_accounted_for_once(site, lines) -> None:
    client, monitor, headers = site
    # one point per sample line; names may hold line breaks, so split as the format does
    kept = [
        line
        for line in "\n".join(lines).split("\n")
        if (bare := line.rstrip("\r").strip(BLANKS)) and not bare.startswith("#")
    ]
    body, sent = "\n".join(kept) + "\n", len(kept)
    before = booked(client, headers)
    answer = client.post(
        "/v1/samples/prometheus",
        content=body.encode(),
        headers=headers | {"Content-Type": "text/plain"},
    )
    assert answer.status_code < 500, answer.text
    if answer.status_code in (400, 413, 415):  # the body itself was refused: no point was read
        return
    assert booked(client, headers) - before == sent
    assert_names_are_identifiers(monitor)


def point(ts: float, value: Any) -> dict[str, Any]:
    """One OTLP data point; odd values kept odd (a string, a bool, null, NaN as text)."""
    stamp = {"timeUnixNano": str(int(ts * 1e9))}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return stamp | {"asDouble": value}
    if isinstance(value, int):
        return stamp | {"asInt": str(value)}
    return stamp | {"asDouble": value if math.isfinite(value) else str(value)}


OTLP_METRIC = st.tuples(
    SERIES,
    st.sampled_from(["gauge", "sum"]),
    st.lists(st.tuples(st.floats(min_value=-30, max_value=5), VALUES), min_size=1, max_size=4),
)


@FUZZ
@given(
    resources=st.lists(
        st.tuples(
            st.dictionaries(
                st.sampled_from(["service.instance.id", "host.name", "service.name", "x"]),
                NAMES,
                max_size=3,
            ),
            st.lists(OTLP_METRIC, max_size=3),
        ),
        max_size=3,
    )
)
def test_otlp_every_data_point_is_accounted_for_once(site, resources) -> None:
    client, monitor, headers = site
    now = time.time()
    payload = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [
                        {"key": k, "value": {"stringValue": v}} for k, v in attrs.items()
                    ]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": name,
                                kind: {
                                    "dataPoints": [
                                        point(now + dt, v)
                                        for dt, v in points
                                    ]
                                },
                            }
                            for name, kind, points in metrics
                        ]
                    }
                ],
            }
            for attrs, metrics in resources
        ]
    }
    sent = sum(len(points) for _, metrics in resources for _, _, points in metrics)
    before = booked(client, headers)
    answer = client.post(
        "/v1/metrics",
        content=json.dumps(payload, allow_nan=True),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert answer.status_code < 500, answer.text
    if answer.status_code in (413, 415):
        return
    assert booked(client, headers) - before == sent
    assert_names_are_identifiers(monitor)


@FUZZ
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/v1/samples", "application/json"),
        ("/v1/samples/prometheus", "text/plain"),
        ("/v1/metrics", "application/json"),
    ],
)
def test_any_body_is_answered_without_a_500(site, path, content_type, body) -> None:
    client, monitor, headers = site
    answer = client.post(path, content=body, headers=headers | {"Content-Type": content_type})
    assert answer.status_code < 500, answer.text
    assert_names_are_identifiers(monitor)


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/samples", b"[" * 50_000 + b"]" * 50_000),
        ("/v1/metrics", b"[" * 50_000 + b"]" * 50_000),
        ("/v1/metrics", b'{"resourceMetrics": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
    ],
)
def test_absurdly_nested_json_is_a_400_not_a_500(site, path, body) -> None:
    client, _, headers = site
    answer = client.post(path, content=body, headers=headers | {"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text

