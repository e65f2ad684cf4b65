"""Incident recordings: the raw samples of a target around an incident, kept for replay.

    recorder = IncidentRecorder(engine.monitor, settings.var_dir / "recordings")
    engine.listeners.append(recorder)       # a StageEvent listener; writes off the loop
    batches = window_batches(recorder.path("5aaded876eda"))   # mendloop.rules_tester -> replay

When an incident opens, every series of its target is copied from the monitor's windows
(the last ``pre_s`` seconds: what led up to it, so a replay starts from healthy data, but
never from before the end of the previous incident on the same target: that one's fault
and fix are its own recording's, and a replay must not see them as this one's);
at every later stage, what arrived since is appended (the fault as it went on, the fix,
the recovery), until the incident ends.
The file is the JSONL window of ``mendloop rules test --window`` (one sample per line),
gzip-compressed (``<incident>.jsonl.gz``; the two snapshots are two gzip members, which
gzip reads as one stream). The copy is taken in the listener (milliseconds, under the
monitor's lock) and written by one background thread, so the loop never waits on disk;
only the newest ``keep`` recordings are kept.
"""

from __future__ import annotations

import gzip
import json
import logging
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.state import TERMINAL, State
from loop.events import StageEvent
from loop.monitor import Monitor

log = logging.getLogger("mendloop.recorder")

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def recording_path(directory: Path, incident_id: str) -> Path:
    if not _SAFE_ID.match(incident_id):
        raise ValueError(f"not an incident id: {incident_id!r}")
    return directory / f"{incident_id}.jsonl.gz"


@dataclass(frozen=True)
class Snapshot:
    incident_id: str
    target: str
    rows: list[tuple[str, np.ndarray, np.ndarray]]  # (series, ts, values)


class IncidentRecorder:
    """A StageEvent listener that records each incident's samples (see the module doc)."""

    def __init__(
        self,
        monitor: Monitor,
        directory: Path,
        pre_s: float = 120.0,
        keep: int = 500,
        previous_end: Callable[[str], float | None] | None = None,
    ) -> None:
        self.monitor = monitor
        self.directory = directory
        self.pre_s = pre_s
        self.keep = keep
        # when the last incident of a target ended, for targets this process has not seen
        # end one (after a restart): the store's answer
        self.previous_end = previous_end
        self._until: dict[str, float] = {}  # incident -> newest ts already recorded
        self._ended: dict[str, float] = {}  # target -> newest ts of its last ended incident
        self._queue: queue.Queue[Snapshot | None] = queue.Queue(maxsize=64)
        self._writer = threading.Thread(target=self._write_loop, name="mendloop-recorder")
        self._writer.daemon = True
        self._writer.start()

    def path(self, incident_id: str) -> Path:
        return recording_path(self.directory, incident_id)

    def __call__(self, event: StageEvent) -> None:
        if event.state == State.open:
            self._snapshot(event.incident_id, event.target, self.start_of(event.target))
            return
        since = self._until.get(event.incident_id)
        if since is None:  # opened before a restart: its early samples are gone anyway
            return
        self._snapshot(event.incident_id, event.target, since)
        if event.state in TERMINAL:
            self._ended[event.target] = self._until.pop(event.incident_id, since)

    def start_of(self, target: str) -> float:
        """Where a new recording of ``target`` starts (exclusive): ``pre_s`` back, but not
        before the end of the target's previous incident."""
        start = self.monitor.clock() - self.pre_s
        ended = self._ended.get(target)
        if ended is None and self.previous_end is not None:
            try:
                ended = self.previous_end(target)
            except Exception:  # the store away: the window alone (logged, never fatal)
                log.warning("target %s: previous incident's end unknown", target, exc_info=True)
        return max(start, ended) if ended is not None else start

    def _snapshot(self, incident_id: str, target: str, after: float) -> None:
        rows = []
        newest = after
        for series in self.monitor.catalog:
            ts, values = self.monitor.window(target, series)
            keep = ts > after
            if keep.any():
                rows.append((series, ts[keep], values[keep]))
                newest = max(newest, float(ts[keep][-1]))
        self._until[incident_id] = newest
        try:
            self._queue.put_nowait(Snapshot(incident_id, target, rows))
        except queue.Full:
            log.warning("incident %s: recording dropped, the writer is behind", incident_id)

    def flush(self) -> None:
        """Wait until every snapshot taken so far is on disk (tests, replay right after)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=30)

    def _write_loop(self) -> None:
        while True:
            snapshot = self._queue.get()
            if snapshot is None:
                self._queue.task_done()
                return
            try:
                self._write(snapshot)
                self._prune()
            except Exception:  # a full disk or a bug: this recording is lost, the writer lives
                log.exception("incident %s: recording not written", snapshot.incident_id)
            finally:
                self._queue.task_done()

    def _write(self, snapshot: Snapshot) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = []
        for series, ts, values in snapshot.rows:
            for t, v in zip(ts.tolist(), values.tolist(), strict=True):
                value = v if np.isfinite(v) else None
                lines.append(
                    json.dumps(
                        {"target": snapshot.target, "series": series, "ts": t, "value": value}
                    )
                )
        with gzip.open(self.path(snapshot.incident_id), "at", encoding="utf-8") as out:
            out.write("\n".join(lines) + ("\n" if lines else ""))

    def _prune(self) -> None:
        files = sorted(self.directory.glob("*.jsonl.gz"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.keep)]:
            old.unlink(missing_ok=True)
