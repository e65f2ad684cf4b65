"""Models on disk: joblib files with a format version and the training window recorded,
plus the schedule that says when a model is due for retraining.

joblib is pickle underneath: only load files this process family wrote (the model
directory is ours, like the SQLite file), never a file from outside.

    meta = save_model(forest, path, key="pm-site-1/cache", trained_from=t0, trained_to=t1)
    forest, meta = load_model(path, kind="GroupForest")
    if RetrainSchedule(every_s=86_400, window_s=7 * 86_400).due(meta, now): ...
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib

from kernel.errors import MendloopError

FORMAT_VERSION = 1


class ModelFileError(MendloopError):
    """A model file that is missing, unreadable, of another format version or kind."""


@dataclass(frozen=True)
class ModelMeta:
    kind: str  # class name of the model
    key: str  # what it models, e.g. "target/subsystem" or a series name
    format_version: int
    trained_from: float  # unix seconds, the training window
    trained_to: float
    saved_at: float


def save_model(
    model: Any,
    path: Path,
    *,
    key: str,
    trained_from: float,
    trained_to: float,
    now: float | None = None,
) -> ModelMeta:
    """Write atomically (temp file + rename) so a crash never leaves half a model."""
    if trained_to < trained_from:
        raise ValueError("trained_to is before trained_from")
    meta = ModelMeta(
        kind=type(model).__name__,
        key=key,
        format_version=FORMAT_VERSION,
        trained_from=float(trained_from),
        trained_to=float(trained_to),
        saved_at=time.time() if now is None else now,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump({"meta": asdict(meta), "model": model}, tmp)
    os.replace(tmp, path)
    return meta


def load_model(path: Path, kind: str | None = None) -> tuple[Any, ModelMeta]:
    """Read a model written by :func:`save_model`; refuse other versions or kinds."""
    try:
        blob = joblib.load(path)
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path}: no such model file") from exc
    except Exception as exc:  # joblib/pickle raise many types for a corrupt file
        raise ModelFileError(f"{path}: unreadable model file ({exc})") from exc
    if not isinstance(blob, dict) or "meta" not in blob or "model" not in blob:
        raise ModelFileError(f"{path}: not a mendloop model file")
    meta = ModelMeta(**blob["meta"])
    if meta.format_version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {meta.format_version}, this mendloop reads "
            f"{FORMAT_VERSION}; retrain the model"
        )
    if kind is not None and meta.kind != kind:
        raise ModelFileError(f"{path}: holds a {meta.kind}, expected a {kind}")
    return blob["model"], meta


@dataclass(frozen=True)
class RetrainSchedule:
    """Retrain every ``every_s`` on the last ``window_s`` seconds of data."""

    every_s: float
    window_s: float

    def due(self, meta: ModelMeta | None, now: float) -> bool:
        """True when there is no model yet or its training window ended >= every_s ago."""
        return meta is None or now - meta.trained_to >= self.every_s

    def window(self, now: float) -> tuple[float, float]:
        """The training window to use for a retrain at ``now``."""
        return now - self.window_s, now


def retrain_due(meta: ModelMeta | None, now: float, every_s: float) -> bool:
    """Shorthand for ``RetrainSchedule(every_s, 0).due(meta, now)``."""
    return RetrainSchedule(every_s, 0.0).due(meta, now)
