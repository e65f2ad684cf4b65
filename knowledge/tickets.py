"""Historical tickets (JSONL or CSV) -> validated Cases, each bad row with its line and why.

A ticket has: id, title, description, symptoms, device, environment, fault, solution,
outcome, time_to_resolve_s, target, region. In CSV, lists are ``;``-separated
(``cache_hit_ratio:low;db_io_wait_pct:high``), the environment is ``load=peak;season=winter``
and the region ``Zhejiang/Hangzhou/Xihu``; in JSONL they may also be real lists and maps.
The same field names are accepted as the Case's own (text, device_type, solution_id), so an
export can be imported again unchanged.

Nothing here touches the graph: parsing is pure, so a file can be checked without Neo4j
(``mendloop kb import --check FILE``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kernel import untrusted
from kernel.domain import Domain
from kernel.errors import KnowledgeError, validation_reasons
from kernel.models import Case

ALIASES = {
    "description": "text",
    "device": "device_type",
    "solution": "solution_id",
}
LIST_FIELDS = ("symptoms",)
MAX_LINE_BYTES = 1_000_000


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str
    id: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" ({self.id})" if self.id else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class GoodRow:
    line: int
    case: Case


Row = GoodRow | BadRow


def _split(value: str, sep: str) -> list[str]:
    return [part.strip() for part in value.split(sep) if part.strip()]


def _not_utf8(value: Any) -> bool:
    """Text decoded with surrogateescape carries lone surrogates where bytes were not UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_not_utf8(k) or _not_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_not_utf8(v) for v in value)
    return False


def normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """Ticket fields -> Case fields (aliases, ;-lists, key=value maps, region paths)."""
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key is None:
            raise ValueError("more values than columns")
        name = ALIASES.get(key.strip(), key.strip())
        if value is None or (isinstance(value, str) and not value.strip() and name != "text"):
            continue
        data[name] = value.strip() if isinstance(value, str) else value
    if isinstance(data.get("symptoms"), str):
        data["symptoms"] = _split(data["symptoms"], ";")
    if isinstance(data.get("environment"), str):
        pairs = _split(data["environment"], ";")
        bad = [p for p in pairs if "=" not in p]
        if bad:
            raise ValueError(f"environment entries must be key=value, got {', '.join(bad)}")
        data["environment"] = dict(p.split("=", 1) for p in pairs)
    if isinstance(data.get("region"), str):
        data["region"] = _split(data["region"], "/")
    if isinstance(data.get("time_to_resolve_s"), str):
        try:
            data["time_to_resolve_s"] = float(data["time_to_resolve_s"])
        except ValueError as exc:
            value = data["time_to_resolve_s"]
            raise ValueError(f"time_to_resolve_s {value!r} is not a number") from exc
    return data


def validate(
    line: int,
    raw: Any,
    domain: Domain,
    series: Collection[str],
    solutions: Collection[str],
) -> Row:
    if not isinstance(raw, dict):
        return BadRow(line, f"expected an object with ticket fields, got {type(raw).__name__}")
    row_id = str(raw.get("id") or "")
    if _not_utf8(raw):
        return BadRow(line, "not valid UTF-8 (re-encode the file or fix this row)", row_id)
    try:
        case = Case.model_validate(normalise(raw))
    except ValueError as exc:
        reason = validation_reasons(exc) if isinstance(exc, ValidationError) else str(exc)
        return BadRow(line, reason, row_id)
    problems = domain.problems(case, series)
    if case.solution_id not in solutions:
        problems.append(f"unknown solution {case.solution_id!r}")
    if problems:
        return BadRow(line, "; ".join(problems), case.id)
    return GoodRow(line, case)


def _jsonl_records(data: bytes) -> Iterator[tuple[int, Any]]:
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        if len(raw_line) > MAX_LINE_BYTES:
            yield number, ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        text = raw_line.decode("utf-8", errors="surrogateescape")
        try:
            yield number, untrusted.loads(text)
        except json.JSONDecodeError as exc:
            yield number, ValueError(f"not JSON: {exc.msg} at column {exc.colno}")
        except ValueError as exc:
            yield number, ValueError(f"not JSON: {exc}")


def _csv_records(data: bytes) -> Iterator[tuple[int, Any]]:
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise KnowledgeError("CSV needs a header row naming the columns (at least id)")
    line = 1
    try:
        for record in reader:
            yield line + 1, record  # the record starts on the line after the previous one
            line = reader.line_num
    except csv.Error as exc:
        yield reader.line_num, ValueError(f"CSV: {exc}")


def read_tickets(
    path: Path,
    domain: Domain,
    series: Collection[str],
    solutions: Collection[str],
) -> Iterator[Row]:
    """Every row of the file, validated; a repeated id is a bad row (the first one wins)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KnowledgeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".csv":
        records = _csv_records(data)
    elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        records = _jsonl_records(data)
    else:
        raise KnowledgeError(f"{path}: unknown format (use .jsonl or .csv)")
    first_seen: dict[str, int] = {}
    for line, record in records:
        if isinstance(record, ValueError):
            yield BadRow(line, str(record))
            continue
        row = validate(line, record, domain, series, solutions)
        if isinstance(row, GoodRow):
            earlier = first_seen.setdefault(row.case.id, line)
            if earlier != line:
                row = BadRow(line, f"duplicate id (first at line {earlier})", row.case.id)
        yield row


def ticket_of(case: Case) -> dict[str, Any]:
    """The JSONL export form of a case (importable again as it is)."""
    data = case.model_dump(mode="json", exclude_defaults=False)
    data["symptoms"] = list(case.symptoms)
    data["region"] = list(case.region)
    return data
