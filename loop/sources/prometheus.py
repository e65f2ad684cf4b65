"""Pull catalog series from a real Prometheus over its HTTP API.

    source = PrometheusSource.for_catalog("http://127.0.0.1:9090", load_catalog())
    source.instant().samples              # latest value of every catalog series
    source.range(start, end, step=1.0)    # /api/v1/query_range, every step
    with PrometheusPoller(source, engine.submit, interval_s=5):
        ...                               # only samples newer than the last seen are submitted

``queries`` maps each query's key to its PromQL. A metric name queried as itself (every
catalog entry's ``metric``, default its name) is fetched with one ``{__name__=~"a|b|..."}``
selector for all of them together, every label set apart; an entry's ``expr:`` has a query
of its own. The target comes from a label of the result (``target``, else ``instance``); the
labels go with each sample to the monitor, which files it under the one catalog entry whose
matchers take it and never merges two label sets into one series (docs/INTAKE.md).

Errors, mapped at the edge from httpx and the API's own answers:

    MendloopError
     └── PrometheusError          anything that keeps a query from answering
          ├── PrometheusUnavailable   cannot connect, timed out, 5xx, not Prometheus' JSON
          └── PrometheusQueryError    4xx or ``"status": "error"`` (bad PromQL, bad range)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from kernel.errors import MendloopError
from kernel.models import Sample
from loop.sources.base import (
    DEFAULT_TARGET_LABELS,
    Issue,
    Origin,
    ParseResult,
    ResultBuilder,
    SampleMapper,
    resolve_target,
)

log = logging.getLogger(__name__)

NAMES_PER_SELECTOR = 100  # keeps one regex selector (and its request body) small
TARGETS_PER_SELECTOR = 200  # a worker's targets, sharded by lease: one matcher per chunk
LOGGED_ISSUES = 5  # refused points logged one by one per poll; the rest as one summary line


class PrometheusError(MendloopError):
    """A Prometheus query failed; the message names the server, the query and the cause."""

    def __init__(self, url: str, query: str, cause: str, status_code: int | None = None) -> None:
        self.url, self.query, self.cause, self.status_code = url, query, cause, status_code
        super().__init__(f"Prometheus at {url}: query {query!r} failed: {cause}")


class PrometheusUnavailable(PrometheusError):
    pass


class PrometheusQueryError(PrometheusError):
    pass


@dataclass(frozen=True)
class PromSeries:
    """One series of an API result: its labels and its (unix seconds, value) points."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


class PrometheusSource:
    """A Prometheus HTTP API client that answers in catalog ``Sample``s."""

    def __init__(
        self,
        url: str,
        queries: Mapping[str, str],
        *,
        target_labels: Sequence[str] = DEFAULT_TARGET_LABELS,
        default_target: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.queries = dict(queries)
        self.mapper = SampleMapper(
            target_labels=tuple(target_labels), default_target=default_target
        )
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)
        # several workers: the targets this one owns (loop/cluster/); None: every target
        self.shard: Callable[[], Iterable[str]] | None = None

    @classmethod
    def for_catalog(
        cls,
        url: str,
        series: Iterable[str],
        overrides: Mapping[str, str] | None = None,
        *,
        target_labels: Sequence[str] = DEFAULT_TARGET_LABELS,
        default_target: str | None = None,
        timeout_s: float = 10.0,
    ) -> PrometheusSource:
        """The queries a catalog needs, except those ``overrides`` give PromQL for.

        ``series``: the catalog, or any list of names (each fetched by its own name). From a
        catalog: an entry's ``metric`` (default: its name) is fetched with every label set,
        which the monitor files by the entry's matchers (rules/selectors.py); an ``expr:``
        entry is its own query; a ``derive:`` entry is computed by the monitor.
        """
        queries = dict(catalog_queries(series)) | dict(overrides or {})
        return cls(
            url,
            queries,
            target_labels=target_labels,
            default_target=default_target,
            timeout_s=timeout_s,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the catalog view ------------------------------------------------------------------

    def instant(self, at: float | None = None) -> ParseResult:
        """Every catalog series' value at ``at`` (default: now); ts is the evaluation time."""
        return self._collect(lambda expr: self.query(expr, at))

    def range(self, start: float, end: float, step: float) -> ParseResult:
        """Every catalog series from ``start`` to ``end`` (unix seconds) every ``step`` s."""
        return self._collect(lambda expr: self.query_range(expr, start, end, step))

    def recent(self, lookback_s: float, at: float | None = None) -> ParseResult:
        """The raw samples of the last ``lookback_s`` with their scrape timestamps.

        A plain name becomes a range selector (``name[30s]``), so timestamps are the ones
        Prometheus stored; an expression becomes a subquery (``(expr)[30s:]``) evaluated at
        the global evaluation interval. This is what the poller uses to find new samples.
        """
        window = _duration(lookback_s)
        return self._collect(lambda expr: self.query(expr, at), f"[{window}]", f"[{window}:]")

    def _collect(
        self, run: Callable[[str], list[PromSeries]], selected: str = "", subquery: str = ""
    ) -> ParseResult:
        """``selected`` follows the name selectors (a range), ``subquery`` the expressions."""
        out = ResultBuilder()
        owned = set(self.shard()) if self.shard is not None else None
        if owned is not None and not owned:
            return out.result()  # several workers: this one owns no target yet
        # sharded by lease: a matcher on the target label, the worker's targets only
        shards = [""]
        if owned is not None:
            label = self.mapper.target_labels[0]
            shards = [
                f',{label}=~"' + "|".join(_promql_regex(t) for t in chunk) + '"'
                for chunk in _chunks(sorted(owned), TARGETS_PER_SELECTOR)
            ]
        plain = sorted(name for name, expr in self.queries.items() if expr == name)
        for chunk in _chunks(plain, NAMES_PER_SELECTOR):
            names = "|".join(re.escape(n) for n in chunk)
            for shard in shards:
                selector = '{__name__=~"' + names + '"' + shard + "}"
                for series in run(selector + selected):
                    self._convert(out, series.labels.get("__name__", ""), series, owned)
        for name, expr in sorted(self.queries.items()):
            if expr == name:
                continue
            for series in run(f"({expr}){subquery}" if subquery else expr):
                self._convert(out, name, series, owned)
        return out.result()

    def _convert(
        self, out: ResultBuilder, name: str, series: PromSeries, owned: set[str] | None = None
    ) -> None:
        labels = {k: v for k, v in series.labels.items() if k != "__name__"}
        if owned is not None and resolve_target(labels, self.mapper.target_labels) not in owned:
            return  # an expression's series of a target another worker owns
        origin = Origin(metric=name, series=f"{name}{sorted(labels.items())!r}")
        for ts, value in series.points:
            out.convert(self.mapper, name, labels, ts, value, origin)

    # -- the HTTP API ----------------------------------------------------------------------

    def query(self, expr: str, at: float | None = None) -> list[PromSeries]:
        """``/api/v1/query``: a vector, matrix or scalar result as ``PromSeries``."""
        form = {"query": expr} | ({"time": _num(at)} if at is not None else {})
        return self._call("/api/v1/query", form, expr)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[PromSeries]:
        """``/api/v1/query_range``: one ``PromSeries`` per result series."""
        form = {"query": expr, "start": _num(start), "end": _num(end), "step": _num(step)}
        return self._call("/api/v1/query_range", form, expr)

    def _call(self, path: str, form: dict[str, str], expr: str) -> list[PromSeries]:
        try:
            # POST with a form body: long selectors do not hit URL length limits
            response = self._client.post(path, data=form)
        except httpx.TimeoutException as exc:
            raise PrometheusUnavailable(self.url, expr, f"timed out ({exc})") from exc
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(self.url, expr, f"unreachable ({exc})") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        client_error = 400 <= response.status_code < 500
        if not isinstance(body, dict) or "status" not in body:
            kind = PrometheusQueryError if client_error else PrometheusUnavailable
            raise kind(
                self.url,
                expr,
                f"HTTP {response.status_code}, not the API's JSON: {response.text[:200]!r}",
                response.status_code,
            )
        if body.get("status") != "success" or not response.is_success:
            cause = f"{body.get('errorType', 'error')}: {body.get('error', 'no reason given')}"
            query_fault = client_error or response.is_success  # status:error on 200: our query
            kind = PrometheusQueryError if query_fault else PrometheusUnavailable
            code = response.status_code
            raise kind(self.url, expr, f"HTTP {code}, {cause}", code)
        for warning in body.get("warnings") or ():
            log.warning("Prometheus %s, query %r: %s", self.url, expr, warning)
        try:
            return parse_data(body["data"])
        except (KeyError, TypeError, ValueError) as exc:
            cause = f"unexpected result shape ({exc!r})"
            raise PrometheusUnavailable(self.url, expr, cause) from exc


def catalog_queries(series: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(key, PromQL) per query: a plain metric name as itself, an ``expr:`` entry by name."""
    specs = series if isinstance(series, Mapping) else {}
    for name in series:
        spec = specs.get(name)
        if spec is None:
            yield name, name
        elif spec.derivation is None:
            yield (name, spec.expr) if spec.expr else (spec.source_metric, spec.source_metric)


def parse_data(data: Mapping[str, Any]) -> list[PromSeries]:
    """The ``data`` of a successful answer (vector, matrix, scalar) as ``PromSeries``."""
    kind, result = data["resultType"], data["result"]
    if kind == "vector":
        return [PromSeries(dict(r["metric"]), (_point(r["value"]),)) for r in result]
    if kind == "matrix":
        return [PromSeries(dict(r["metric"]), tuple(map(_point, r["values"]))) for r in result]
    if kind == "scalar":
        return [PromSeries({}, (_point(result),))]
    raise ValueError(f"result type {kind!r} carries no samples")


def _point(pair: Sequence[Any]) -> tuple[float, float]:
    ts, value = pair
    return float(ts), float(value)  # values come as strings: "NaN", "+Inf", "0.93"


def _num(x: float) -> str:
    return repr(float(x))


def _duration(seconds: float) -> str:
    """PromQL duration; whole milliseconds, the finest it takes."""
    return f"{max(1, round(seconds * 1000))}ms"


def _promql_regex(value: str) -> str:
    """A literal for an RE2 matcher inside a PromQL string (its backslashes escaped too)."""
    return re.escape(value).replace("\\", "\\\\")


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Submit(Protocol):
    """The engine's ``submit``: the new samples, and the points refused before (by reason)."""

    def __call__(self, batch: list[Sample], *, refused: Mapping[str, int]) -> object: ...


SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]  # name, target, the other labels


@dataclass(frozen=True)
class PollResult:
    """One poll: how many samples were new and submitted, how many were already seen."""

    submitted: int
    seen_before: int
    issues: int
    error: str | None = None
    refused: int = 0  # issues new to this poll (handed to submit to be counted)


class PrometheusPoller:
    """Every ``interval_s``, reads the recent samples and submits only the new ones.

    "New" is per Prometheus series (name, target and every other label): a sample at or
    before the last timestamp submitted for it is skipped, so overlapping lookback windows
    never submit a sample twice, while series of one name told apart by their labels (the
    mount points of ``node_filesystem_avail_bytes``, scraped at one instant) each keep
    their own mark: none hides another's samples (docs/INTAKE.md, series identity).

    A point that cannot be a sample (a target that is not an identifier, no target, a bad
    label) is handed to ``submit`` as ``refused`` (counted by reason where ``/v1/intake``
    shows it) once, not at every poll that reads it again; the first few of a poll are
    logged, escaped. Marks older than twice the lookback are dropped: memory follows the
    live series, not every name ever read.

    A failed poll (Prometheus down) is logged and kept on ``last``; the next one tries
    again. A failing ``submit`` (e.g. ``Overloaded``) leaves the marks where they were, so
    the next poll offers the same samples again while they are inside the lookback.
    Runs in a daemon thread; ``stop()`` wakes it at once and waits for it.
    """

    def __init__(
        self,
        source: PrometheusSource,
        submit: Submit,
        interval_s: float = 5.0,
        lookback_s: float | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.source = source
        self.submit = submit
        self.interval_s = interval_s
        # twice the interval so a slow scrape or a late poll still finds every sample
        self.lookback_s = lookback_s if lookback_s is not None else max(2 * interval_s, 5.0)
        self.last: PollResult | None = None
        self.polls = 0
        self._seen: dict[SeriesKey, float] = {}
        self._refused_seen: dict[str, float] = {}  # raw series -> newest refused point
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll_once(self) -> PollResult:
        """Query, keep what is newer than seen, submit it; never raises PrometheusError."""
        try:
            result = self.source.recent(self.lookback_s)
        except PrometheusError as exc:
            log.warning("prometheus poll failed: %s", exc)
            self.last = PollResult(0, 0, 0, error=str(exc))
            return self.last
        fresh: list[Sample] = []
        marks: dict[SeriesKey, float] = {}
        for sample in sorted(result.samples, key=lambda s: s.ts):
            key = (sample.series, sample.target, tuple(sorted(sample.labels.items())))
            if sample.ts > marks.get(key, self._seen.get(key, float("-inf"))):
                marks[key] = sample.ts
                fresh.append(sample)
        refused, refused_marks = self._new_issues(result.issues)
        if fresh or refused:
            # marks move only once submit took the batch: if it raises (Overloaded), the
            # next poll offers the same samples again while they are inside the lookback
            self.submit(fresh, refused=refused)
            self._seen.update(marks)
            self._refused_seen.update(refused_marks)
        self._forget_old_marks()
        self.polls += 1
        self.last = PollResult(
            len(fresh),
            len(result.samples) - len(fresh),
            len(result.issues),
            refused=sum(refused.values()),
        )
        return self.last

    def _new_issues(self, issues: Iterable[Issue]) -> tuple[Counter[str], dict[str, float]]:
        """Points refused that no earlier poll refused already: by reason, and their marks."""
        refused: Counter[str] = Counter()
        marks: dict[str, float] = {}
        logged = 0
        for issue in issues:
            if issue.point is not None:
                key, ts = issue.point
                if ts <= marks.get(key, self._refused_seen.get(key, float("-inf"))):
                    continue
                marks[key] = ts
            refused[issue.reason] += issue.points
            if logged < LOGGED_ISSUES:  # a flood of bad names is counted, not logged line by line
                log.warning("prometheus sample not taken: %s", issue)
                logged += 1
        if sum(refused.values()) > logged:
            log.warning(
                "prometheus: %d point(s) not taken this poll, by reason: %s",
                sum(refused.values()),
                dict(refused),
            )
        return refused, marks

    def _forget_old_marks(self) -> None:
        """A mark older than the lookback can no longer tell a point apart: drop it."""
        horizon = time.time() - 2 * self.lookback_s - self.interval_s
        self._seen = {k: ts for k, ts in self._seen.items() if ts >= horizon}
        self._refused_seen = {k: ts for k, ts in self._refused_seen.items() if ts >= horizon}

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("PrometheusPoller already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="prometheus-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; safe to call twice. A poll in flight finishes first."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> PrometheusPoller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.poll_once()
            except Exception:  # a failing submit must not silently end the polling
                log.exception("prometheus poll failed")
            next_at = max(next_at + self.interval_s, time.monotonic())
