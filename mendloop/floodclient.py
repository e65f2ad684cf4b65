"""The flood of `mendloop bench flood`, in a process of its own (so its CPU and memory are
not the server's): workers push ever new targets through the real HTTP API while a prober
times what a person's request costs meanwhile.

    python -m mendloop.floodclient < config.json > result.json   # stops on a line on stdin

Config (JSON on stdin's first line): ``url``, ``tokens`` (operator tokens, one per worker
in turn), ``viewer`` (the prober's token), ``series`` and ``values`` (one target's samples),
``targets_per_request``, ``workers``, ``max_s``, ``probe_every_s``, ``repeat``. Each
request carries ``targets_per_request`` new targets x every series, in turn as JSON,
Prometheus text and OTLP; with ``repeat`` every other request sends a worker's first
targets again (they got in, and their faulty values open incidents, as an attacker's
would). Bodies are made from templates split once, so the client's own cost stays small.
Result: requests and their latencies, points sent, and the server's answers summed
(accepted, stale, refused by reason), plus the prober's latencies.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx

FORMATS = ("json", "text", "otlp")
PLACEHOLDER = re.compile(r"__(T\d+|TS|TSMS|TSNS)__")


def _templates(series: list[str], values: list[float], per_request: int) -> dict[str, list[str]]:
    """Each format's body with ``__T<i>__`` for target i and ``__TS*__`` for the time, split
    on those marks (even items are text, odd items are mark names)."""
    targets = [f"__T{i}__" for i in range(per_request)]
    rows = [
        {"series": s, "labels": {"target": t}, "ts": "__TS__", "value": v}
        for t in targets
        for s, v in zip(series, values, strict=True)
    ]
    json_body = json.dumps(rows).replace('"__TS__"', "__TS__")
    text_body = "".join(
        f'{s}{{target="{t}"}} {v!r} __TSMS__\n'
        for t in targets
        for s, v in zip(series, values, strict=True)
    )
    resources = [
        {
            "resource": {
                "attributes": [{"key": "service.instance.id", "value": {"stringValue": t}}]
            },
            "scopeMetrics": [
                {
                    "metrics": [
                        {
                            "name": s,
                            "gauge": {"dataPoints": [{"timeUnixNano": "__TSNS__", "asDouble": v}]},
                        }
                        for s, v in zip(series, values, strict=True)
                    ]
                }
            ],
        }
        for t in targets
    ]
    otlp_body = json.dumps({"resourceMetrics": resources})
    return {
        name: PLACEHOLDER.split(body)
        for name, body in (("json", json_body), ("text", text_body), ("otlp", otlp_body))
    }


def _render(parts: list[str], names: list[str], now: float) -> str:
    times = {"TS": repr(now), "TSMS": str(int(now * 1000)), "TSNS": str(int(now * 1e9))}
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif part.startswith("T") and part[1:].isdigit():
            out.append(names[int(part[1:])])
        else:
            out.append(times[part])
    return "".join(out)


class Flood:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.templates = _templates(
            config["series"], config["values"], config["targets_per_request"]
        )
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {name: [] for name in FORMATS}
        self.probe_latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.sent = 0
        self.errors: Counter[str] = Counter()

    def worker(self, index: int) -> None:
        token = self.config["tokens"][index % len(self.config["tokens"])]
        per_request = self.config["targets_per_request"]
        points = per_request * len(self.config["series"])
        headers = {"Authorization": f"Bearer {token}"}
        kinds = {"json": "application/json", "text": "text/plain", "otlp": "application/json"}
        paths = {"json": "/v1/samples", "text": "/v1/samples/prometheus", "otlp": "/v1/metrics"}
        with httpx.Client(base_url=self.config["url"], timeout=120) as client:
            n = 0
            first = [f"flood-w{index}-0-{i}" for i in range(per_request)]
            while not self.stop.is_set():
                fmt = FORMATS[n % len(FORMATS)]
                names = [f"flood-w{index}-{n}-{i}" for i in range(per_request)]
                if n % 2 == 1 and self.config["repeat"]:  # the first names again: they got in
                    names = first  # and keep sending faulty values (bogus incidents)
                body = _render(self.templates[fmt], names, time.time())
                start = time.perf_counter()
                try:
                    answer = client.post(
                        paths[fmt], content=body, headers={**headers, "content-type": kinds[fmt]}
                    )
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - start
                with self.lock:
                    self.latencies[fmt].append(elapsed)
                    self.statuses[str(answer.status_code)] += 1
                    self.sent += points
                    self._tally(answer, points)
                n += 1

    def _tally(self, answer: httpx.Response, points: int) -> None:
        if answer.status_code == 429:
            self.answers["shed_overload"] += points
            return
        try:
            body = answer.json()
        except ValueError:
            self.answers["unreadable"] += points
            return
        self.answers["accepted"] += body.get("accepted", 0)
        self.answers["stale"] += body.get("stale", 0)
        for rejection in body.get("rejected", []):
            self.answers[rejection["reason"]] += rejection.get("points", 1)

    def prober(self) -> None:
        """What a person does meanwhile: list the newest incidents (auth + SQL)."""
        headers = {"Authorization": f"Bearer {self.config['viewer']}"}
        with httpx.Client(base_url=self.config["url"], timeout=120) as client:
            while not self.stop.wait(self.config["probe_every_s"]):
                start = time.perf_counter()
                try:
                    client.get("/v1/incidents", params={"limit": 10}, headers=headers)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors[f"probe {type(exc).__name__}"] += 1
                    continue
                with self.lock:
                    self.probe_latencies.append(time.perf_counter() - start)

    def run(self) -> dict[str, Any]:
        threads = [
            threading.Thread(target=self.worker, args=(i,), daemon=True)
            for i in range(self.config["workers"])
        ]
        threads.append(threading.Thread(target=self.prober, daemon=True))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        watcher = threading.Thread(target=self._wait_for_stop, daemon=True)
        watcher.start()
        self.stop.wait(self.config["max_s"])
        self.stop.set()
        for thread in threads:
            thread.join(150)
        return {
            "seconds": round(time.monotonic() - started, 1),
            "sent": self.sent,
            "answers": dict(self.answers),
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "latencies": self.latencies,
            "probe_latencies": self.probe_latencies,
        }

    def _wait_for_stop(self) -> None:
        sys.stdin.readline()  # the bench writes a line (or closes stdin) when it is done
        self.stop.set()


def main() -> None:
    config = json.loads(sys.stdin.readline())
    print(json.dumps(Flood(config).run()), flush=True)


if __name__ == "__main__":
    main()
