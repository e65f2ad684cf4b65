"""`mendloop rca`: the user's files in, ranked components out; every bad file refused with
file:line and a reason, exit 2, never a traceback."""

import csv
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mendloop.cli import main

T0 = 1_700_000_000
DEPS = {"web": ["api"], "api": ["db", "cache"], "db": [], "cache": []}
HEADER = "component,metric,timestamp,value\n"
JSON_LINE = '{"component": "a", "metric": "m", "timestamp": 1, "value": 1}'


def _samples(culprit="db", seed=0):
    """Two hours at 1 min; in the last 10 minutes the culprit's cpu and the latency of it
    and everything that depends on it climb."""
    rng = np.random.default_rng(seed)
    affected = {"db": {"db", "api", "web"}, "cache": {"cache", "api", "web"}}[culprit]
    for comp in DEPS:
        for metric in ("latency_ms", "cpu_pct"):
            for i in range(120):
                v = 50 + rng.normal()
                if i >= 110 and metric == "latency_ms" and comp in affected:
                    v += 30
                if i >= 110 and comp == culprit and metric == "cpu_pct":
                    v += 40
                yield comp, metric, T0 + 60 * i, round(float(v), 3)


@pytest.fixture
def files(tmp_path):
    metrics = tmp_path / "metrics.csv"
    with metrics.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["component", "metric", "timestamp", "value"])
        w.writerows(_samples())
    edges = tmp_path / "edges.csv"
    edges.write_text(
        "component,depends_on\n# web calls api\n"
        + "".join(f"{c},{d}\n" for c, ds in DEPS.items() for d in ds)
    )
    return metrics, edges


def _run(capsys, *args):
    rc = main(["rca", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_ranked_components_with_evidence(files, capsys):
    metrics, edges = files
    rc, out, err = _run(
        capsys, "--metrics", metrics, "--topology", edges, "--window", 600, "--json"
    )
    assert rc == 0 and err == ""
    result = json.loads(out)
    top = result["components"][0]
    assert top["component"] == "db" and top["anomalous"] and top["confidence"] > 0.5
    assert {e["metric"] for e in top["evidence"][:2]} == {"latency_ms", "cpu_pct"}
    assert top["onset"] == T0 + 60 * 110
    assert result["series"] == 8 and result["window"]["end"] == T0 + 60 * 119
    assert [c["component"] for c in result["components"]][-1] == "cache"
    rc, out, _ = _run(capsys, "--metrics", metrics, "--topology", edges)
    assert rc == 0 and out.splitlines()[1].startswith(" 1. db")


def test_another_culprit_another_answer(tmp_path, capsys):
    metrics = tmp_path / "m.jsonl"  # JSON Lines, ISO times
    with metrics.open("w") as f:
        for comp, metric, ts, value in _samples("cache", seed=3):
            iso = np.datetime_as_string(np.datetime64(ts, "s")) + "Z"
            rec = {"component": comp, "metric": metric, "timestamp": iso, "value": value}
            f.write(json.dumps(rec) + "\n")
    topo = tmp_path / "site.yaml"
    comps = "".join(f"  {c}: {{depends_on: {d}}}\n" for c, d in DEPS.items())
    topo.write_text("components:\n" + comps)
    rc, out, _ = _run(capsys, "--metrics", metrics, "--topology", topo, "--json")
    assert rc == 0
    assert json.loads(out)["components"][0]["component"] == "cache"


def test_symptom_and_window(files, capsys):
    metrics, edges = files
    args = ["--metrics", metrics, "--topology", edges, "--json"]
    rc, out, _ = _run(capsys, *args, "--symptom", "web:latency_ms")
    assert rc == 0 and json.loads(out)["symptom"] == "web:latency_ms"
    assert json.loads(out)["components"][0]["component"] == "db"
    # a window before the incident finds nothing abnormal
    rc, out, _ = _run(capsys, *args, "--end", T0 + 60 * 100, "--window", 600)
    assert rc == 0
    assert not any(c["anomalous"] for c in json.loads(out)["components"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("comp,metric,ts,value\n", "metrics.csv:1: the header must name"),
        (f"{HEADER}a,m,yesterday,1\n", "metrics.csv:2: timestamp 'yesterday'"),
        ("component,metric,timestamp,value\na,m,1,1\na,m,2,high\n", "metrics.csv:3: value 'high'"),
        ("component,metric,timestamp,value\na,m,1,1\na,m,1,2\n", "metrics.csv:3: a second sample"),
        ("component,metric,timestamp,value\n,m,1,1\n", "metrics.csv:2: component is missing"),
        ("component,metric,timestamp,value\na\x07,m,1,1\n", "metrics.csv:2: component"),
        ("component,metric,timestamp,value\na,m,1\n", "metrics.csv:2: 3 columns"),
        ("component,metric,timestamp,value\n", "metrics.csv: holds no sample"),
        ("", "metrics.csv: is empty"),
        (f"{JSON_LINE}\n[1]\n", "metrics.csv:2: not a JSON"),
        (f"{JSON_LINE}\n{{oops\n", "metrics.csv:2: not a JSON"),
        (JSON_LINE.replace('"timestamp": 1', '"timestamp": true'), "metrics.csv:1: timestamp"),
        ("component,metric,timestamp,value\na,m,1,inf\n", "metrics.csv:2: value 'inf'"),
    ],
)
def test_bad_metrics_files(tmp_path, capsys, text, message):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(text)
    rc, out, err = _run(capsys, "--metrics", metrics)
    assert rc == 2 and out == ""
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("e.csv", "from,to\na,b\n", "e.csv:1: the header must name component, depends_on"),
        ("e.csv", "component,depends_on\na,b\nb,b\n", "e.csv:3: b depends on itself"),
        ("e.csv", "component,depends_on\na,\n", "e.csv:2: depends_on is missing"),
        ("e.yaml", "components: [a, b]\n", "e.yaml: needs `components:"),
        ("e.yaml", "components:\n  a: {depends_on: b}\n", "depends_on must be a list"),
        ("e.yaml", "components: {a: [\n", "e.yaml:2: not valid YAML"),
    ],
)
def test_bad_topology_files(files, tmp_path, capsys, name, text, message):
    metrics, _ = files
    topo = tmp_path / name
    topo.write_text(text)
    rc, _, err = _run(capsys, "--metrics", metrics, "--topology", topo)
    assert rc == 2 and message in err and "Traceback" not in err


def test_bad_arguments(files, tmp_path, capsys):
    metrics, edges = files
    cases = [
        (["--symptom", "web"], "expected COMPONENT:METRIC"),
        (["--symptom", "web:nope"], "no such series"),
        (["--start", "2030-01-01T00:00:00", "--end", "2020-01-01T00:00:00"], "--start is after"),
        (["--start", "soon"], "--start/--end"),
        (["--top", "0"], "must be positive"),
        (["--baseline", "-5"], "--baseline must be positive"),
    ]
    for extra, message in cases:
        rc, _, err = _run(capsys, "--metrics", metrics, "--topology", edges, *extra)
        assert rc == 2 and message in err, (extra, err)
    missing = tmp_path / "nope.csv"
    rc, _, err = _run(capsys, "--metrics", missing)
    assert rc == 2 and "nope.csv: cannot be read" in err
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    rc, _, err = _run(capsys, "--metrics", binary)
    assert rc == 2 and "not UTF-8" in err


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(st.text(max_size=40), max_size=6))
def test_any_text_is_refused_or_ranked_never_a_crash(tmp_path, capsys, lines):
    metrics = tmp_path / "fuzz.csv"
    metrics.write_text("component,metric,timestamp,value\n" + "\n".join(lines) + "\n")
    rc = main(["rca", "--metrics", str(metrics), "--json"])
    out = capsys.readouterr()
    assert rc in (0, 2)
    if rc == 0:
        json.loads(out.out)
    else:
        assert out.err.startswith("mendloop: ")
