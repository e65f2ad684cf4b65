"""The solution library: YAML metadata + Ansible playbooks, validated whole on load.

    library = load_library(TWIN_PACK)                       # id -> SolutionSpec (one pack)
    spec = library["sol-cache-scale-out"]
    spec.render_vars({"target": "pm-site-1"}, {"twin_url": url})   # validated extra vars
    load_solutions(TWIN_PACK)                               # id -> Solution (graph view)

A site composes the libraries of its packs and its own (sites/load.py); the format is
documented in docs/REMEDIATION.md and docs/SITES.md. Every entry names the faults it fixes,
its risk, typed parameters (rendered into extra vars), whether its playbook supports
check mode, how it is verified (metrics, conditions, hold, deadline, SQI floor), its
rollback, its blast radius and preconditions. A file with any error is refused whole and
every error is reported with file:line, as rule files are (rules/loader.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kernel.config import TWIN_PACK
from kernel.errors import PlaybookError
from kernel.models import Solution
from kernel.plan import Condition, Scalar

DEFAULT_DEADLINE_S = 600.0  # the paper: effect verified within 10 minutes
PLAYBOOK_SUFFIXES = (".yml", ".yaml")

def library_playbook(playbooks_dir: Path, name: str) -> Path:
    """The file of playbook ``name`` inside the library folder, or ValueError saying why
    it may not run: only a relative YAML file name without ``..``, that resolves (symlinks
    followed) to a regular file inside ``playbooks_dir``. The runner and the library
    loader both ask here, so a name from the graph or a stored decision cannot leave it."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"playbook name {name!r} is empty")
    shown = name if name.isprintable() else repr(name)  # never a raw newline in a reason
    if "\0" in name or "\\" in name:
        raise ValueError(f"playbook {shown}: NUL or backslash in the name")
    relative = PurePosixPath(name)
    if relative.is_absolute() or name.startswith("~"):
        raise ValueError(f"playbook {shown}: an absolute path; only library names may run")
    if ".." in relative.parts:
        raise ValueError(f"playbook {shown}: '..' in the path; only library names may run")
    if relative.suffix not in PLAYBOOK_SUFFIXES:
        raise ValueError(f"playbook {shown}: not a .yml/.yaml file")
    root = playbooks_dir.resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ValueError(f"playbook {shown}: cannot be resolved: {exc}") from exc
    if not path.is_relative_to(root):
        raise ValueError(f"playbook {shown}: resolves to {path}, outside the library {root}")
    if not path.is_file():
        raise ValueError(f"playbook {shown} not found in {root}")
    return path


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _conditions(value: Any) -> tuple[Condition, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("must be a list of condition strings")
    return tuple(c if isinstance(c, Condition) else Condition.parse(str(c)) for c in value)


class Parameter(_Strict):
    """A typed, bounded playbook parameter; its value is rendered into the extra vars."""

    type: Literal["str", "int", "float", "bool"]
    default: Scalar | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Scalar, ...] | None = None
    pattern: str | None = Field(None, description="regex a str value must fully match")
    from_label: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the fired series' label"
    )
    from_inventory: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the target host's variable"
    )
    description: str = ""

    def coerce(self, name: str, value: Any) -> Scalar:
        """The value in its declared type, or ValueError saying why not."""
        kind = {"str": str, "int": int, "float": float, "bool": bool}[self.type]
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"parameter {name}: {value!r} is not a {self.type}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise ValueError(f"parameter {name}: {value} is below the minimum {self.min:g}")
            if self.max is not None and value > self.max:
                raise ValueError(f"parameter {name}: {value} is above the maximum {self.max:g}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {name}: {value!r} is not one of {list(self.choices)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            raise ValueError(f"parameter {name}: {value!r} does not match {self.pattern}")
        assert isinstance(value, str | int | float | bool)  # its declared kind, checked above
        return value


class VerificationSpec(_Strict):
    """What must hold after the run: every ``metrics`` series (and those that opened the
    incident) within warn, every condition, the SQI at least ``sqi_min``, continuously for
    ``hold_s`` (None: the daemon's setting), before ``deadline_s``."""

    metrics: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    hold_s: float | None = Field(None, gt=0)
    deadline_s: float = Field(DEFAULT_DEADLINE_S, gt=0, le=3600)
    sqi_min: float | None = Field(80.0, ge=0, le=100)

    _conds = field_validator("conditions", mode="before")(_conditions)


class SolutionSpec(_Strict):
    """One entry of the library, as docs/REMEDIATION.md documents it."""

    id: str = Field(pattern=r"^sol-[a-z0-9-]+$")
    title: str = Field(min_length=1)
    faults: tuple[str, ...] = Field(min_length=1)
    risk: Literal["low", "medium", "high"]
    playbook: str
    check_mode: bool = True
    rollback_playbook: str | None = None
    no_rollback: str = Field("", description="why there is no rollback (site check asks)")
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    verification: VerificationSpec = Field(default_factory=VerificationSpec)
    blast_radius: int = Field(1, ge=1, le=1000, description="targets it may run on at once")
    preconditions: tuple[Condition, ...] = ()
    description: str = ""
    # where the entry comes from: set by the site loader (sites/), never by the file
    pack: str = Field("", exclude=True)
    override: bool = Field(False, exclude=True, description="a site replaces a pack's entry")

    _conds = field_validator("preconditions", mode="before")(_conditions)

    def render_vars(
        self, base: Mapping[str, Scalar], overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Scalar]:
        """Extra vars: ``base`` (target) + every parameter, defaults filled
        in and overrides validated; ValueError names the first bad or missing one."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(self.parameters)
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        rendered: dict[str, Scalar] = dict(base)
        for name, param in self.parameters.items():
            value = overrides.get(name, param.default)
            if value is None:
                raise ValueError(f"parameter {name}: no value and no default")
            rendered[name] = param.coerce(name, value)
        return rendered

    def solution(self) -> Solution:
        """The graph's view of this entry (success counters start at zero)."""
        return Solution(
            id=self.id,
            title=self.title,
            playbook=self.playbook,
            rollback_playbook=self.rollback_playbook,
            risk=self.risk,
            fixes=",".join(self.faults),
            description=self.description,
        )


# -- loading with file:line -----------------------------------------------------------------


def _line_at(node: yaml.Node, loc: Iterable[str | int]) -> int:
    """The line (1-based) of the deepest node along ``loc`` that exists."""
    line = node.start_mark.line + 1
    for step in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in reversed(node.value) if k.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            child = (None, node.value[step]) if step < len(node.value) else None
        if child is None:
            break
        key, node = child
        line = (key or node).start_mark.line + 1
    return line


def check_file(
    path: Path,
    playbooks_dir: Path,
    known_series: Iterable[str] | None = None,
    known_faults: Iterable[str] | None = None,
) -> tuple[dict[str, SolutionSpec], list[str]]:
    """Every entry of one library file, or every error as ``path:line: reason``."""
    try:
        text = path.read_text()
        entries = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except OSError as exc:
        return {}, [f"{path}: cannot read the solution library: {exc}"]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return {}, [f"{path}:{mark.line + 1 if mark else '?'}: {exc}"]
    if not isinstance(entries, list) or not isinstance(root, yaml.SequenceNode):
        return {}, [f"{path}:1: expected a list of solutions"]
    series = set(known_series) if known_series is not None else None
    faults = set(known_faults) if known_faults is not None else None
    specs: dict[str, SolutionSpec] = {}
    errors: list[str] = []
    for index, entry in enumerate(entries):
        node = root.value[index]
        if isinstance(entry, dict) and "pack" in entry:
            line = _line_at(node, ("pack",))
            errors.append(f"{path}:{line}: solution #{index + 1}: pack: set by the site, not here")
            continue
        try:
            spec = SolutionSpec.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(map(str, err["loc"])) or "entry"
                line = _line_at(node, err["loc"])
                errors.append(f"{path}:{line}: solution #{index + 1}: {loc}: {err['msg']}")
            continue
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if spec.id in specs:
            problems.append((("id",), f"solution id {spec.id} is defined twice"))
        for field in ("playbook", "rollback_playbook"):
            playbook = getattr(spec, field)
            if playbook is None:
                continue
            try:
                library_playbook(playbooks_dir, playbook)
            except ValueError as exc:
                problems.append(((field,), str(exc)))
        for name, param in spec.parameters.items():
            if param.default is not None:
                try:
                    param.coerce(name, param.default)
                except ValueError as exc:
                    problems.append((("parameters", name, "default"), str(exc)))
        if faults is not None:
            for i, fault in enumerate(spec.faults):
                if fault not in faults:
                    problems.append((("faults", i), f"unknown fault {fault}"))
        if series is not None:
            named: list[tuple[tuple[str | int, ...], str]] = [
                (("verification", "metrics", i), s) for i, s in enumerate(spec.verification.metrics)
            ]
            named += [
                (("verification", "conditions", i), c.series)
                for i, c in enumerate(spec.verification.conditions)
            ]
            named += [(("preconditions", i), c.series) for i, c in enumerate(spec.preconditions)]
            problems += [(loc, f"unknown metric {s}") for loc, s in named if s not in series]
        for where, reason in problems:
            errors.append(f"{path}:{_line_at(node, where)}: {spec.id}: {reason}")
        if not problems:
            specs[spec.id] = spec
    return specs, errors


def check_library(
    pack_dir: Path = TWIN_PACK,
    known_series: Iterable[str] | None = None,
    known_faults: Iterable[str] | None = None,
) -> tuple[dict[str, SolutionSpec], list[str]]:
    """Every ``solutions/*.yaml`` of one pack (or site) against its ``playbooks/``, each
    entry marked with the pack's name; a site composes several (sites/load.py)."""
    library: dict[str, SolutionSpec] = {}
    errors: list[str] = []
    series = list(known_series) if known_series is not None else None
    folder = pack_dir / "solutions"
    files = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    for path in files:
        specs, errs = check_file(path, pack_dir / "playbooks", series, known_faults)
        errors += errs
        for sid in sorted(set(specs) & set(library)):
            errors.append(f"{path}: solution id {sid} is defined in two library files")
        library.update(
            {sid: spec.model_copy(update={"pack": pack_dir.name}) for sid, spec in specs.items()}
        )
    return library, errors


def load_library(
    pack_dir: Path = TWIN_PACK,
    known_series: Iterable[str] | None = None,
    known_faults: Iterable[str] | None = None,
) -> dict[str, SolutionSpec]:
    """The validated library of one pack; any error refuses it whole (PlaybookError
    lists them all)."""
    library, errors = check_library(pack_dir, known_series, known_faults)
    if errors:
        raise PlaybookError("solution library refused:\n" + "\n".join(errors))
    return library


def load_solutions(pack_dir: Path = TWIN_PACK) -> dict[str, Solution]:
    """One pack's library as the knowledge graph stores it."""
    return {sid: spec.solution() for sid, spec in load_library(pack_dir).items()}
