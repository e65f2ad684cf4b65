"""`mendloop eval rca|nab|smd|forest`: accuracy figures for docs/EVALUATION.md.

With --json exactly one JSON object goes to stdout; progress goes to stderr.

    mendloop eval nab --json                       # whole 58-file corpus, ~7 min on 2 cores
    mendloop eval nab --files realKnownCause/nyc_taxi.csv,realKnownCause/rogue_agent_key_hold.csv
    mendloop eval smd --machines machine-1-6 --json
    mendloop eval forest --json                    # IsolationForest groups on the twin
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from loop.config import REPO_ROOT, Settings
from loop.errors import MendloopError

# the team's checkout keeps the public data beside the repo; MENDLOOP_DATASETS points
# elsewhere (a clone in another folder, a CI cache)
DEFAULT_DATASETS = Path(
    os.environ.get("MENDLOOP_DATASETS", str(REPO_ROOT.parent / "shared" / "datasets"))
)


def _split(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _data_root(args: argparse.Namespace, name: str) -> Path:
    root = Path(args.data) if args.data else DEFAULT_DATASETS / name
    if not root.is_dir():
        raise MendloopError(f"dataset folder {root} not found; pass --data DIR")
    return root


def _nab(args: argparse.Namespace) -> dict[str, Any]:
    from evaluation.nab import corpus_names
    from evaluation.nab_eval import evaluate_nab

    root = _data_root(args, "nab")
    names = _split(args.files)
    if names:
        unknown = sorted(set(names) - set(corpus_names(root)))
        if unknown:
            raise MendloopError(f"not NAB files: {', '.join(unknown)} (use category/file.csv)")
    return evaluate_nab(root, names, progress=_progress)


def _smd(args: argparse.Namespace) -> dict[str, Any]:
    from evaluation.smd import MACHINES, evaluate_smd

    root = _data_root(args, "smd")
    machines = _split(args.machines) or list(MACHINES)
    missing = [m for m in machines if not (root / "test" / f"{m}.txt.gz").exists()]
    if missing:
        raise MendloopError(f"no SMD data for {', '.join(missing)} in {root}")
    if args.ranker_setting == "synthetic" and args.limit is not None:
        from evaluation.smd_select import MIN_TRAIN_ROWS

        if args.limit < MIN_TRAIN_ROWS:
            raise MendloopError(
                f"--limit {args.limit} leaves too few training rows for the synthetic faults"
                f" that choose the ranker's setting (needs {MIN_TRAIN_ROWS});"
                " add --ranker-setting fixed"
            )
    return evaluate_smd(
        root,
        machines,
        args.false_alarm_rate,
        limit=args.limit,
        progress=_progress,
        select=args.ranker_setting,
    )


def _forest(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from evaluation.forest_twin import evaluate_forest
    from evaluation.rca import DEV_SEEDS
    from rules.catalog import load_catalog

    seeds = tuple(int(s) for s in _split(args.seeds) or ()) or DEV_SEEDS
    catalog = load_catalog(settings.rules_dir / "metrics.yaml")
    return evaluate_forest(catalog, seeds, quick=bool(args.quick))


def _forest_summary(r: dict[str, Any]) -> str:
    return (
        f"{r['scenarios']} single faults, {r['control_hours']:.2f} control hours, "
        f"seeds {r['seeds']}\n"
        f"  first component flagged is the fault's: forest {r['forest_first_right']:.1%}, "
        f"baselines {r['baseline_first_right']:.1%}; p50 {r['forest_after_s_p50']} s / "
        f"{r['baseline_after_s_p50']} s after the injection\n"
        f"  forest: {r['forest_false_rows_per_hour']} anomalous rows per fault-free hour, "
        f"{r['score_call_ms']} ms per score call ({r['score_ms_per_tick_10_targets']} ms per "
        f"tick for 10 targets)"
    )


def _print_nab(r: dict[str, Any], profile: str) -> None:
    print(f"NAB, {r['files']} files, {r['run_time_s']} s")
    print(f"  default setting {r['default_setting']}: {profile} {r['default'][profile]}")
    if profile in r["cv"]:
        print(f"  2-fold cross-validated: {profile} {r['cv'][profile]}")
    for name, pub in r["published"].items():
        print(f"  published {name}: {pub[profile]}")


def _print_smd(r: dict[str, Any]) -> None:
    for m, res in r["machines"].items():
        print(
            f"{m}: F1 point-wise {res['point_wise']['f1']}, point-adjusted "
            f"{res['point_adjusted']['f1']}; HitRate per point @100% "
            f"{res['hitrate_per_point']['@100%']} @150% {res['hitrate_per_point']['@150%']}"
            f" (ranker setting {res['ranker_setting']})"
        )
    print(f"mean: {r['mean']}  ({r['run_time_s']} s)")


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    if args.kind == "rca":
        from evaluation.rca import run_rca_eval, summary

        result = run_rca_eval(settings, args)
        print(json.dumps(result, default=str) if args.json else summary(result))
        return 0
    if args.kind == "forest":
        result = _forest(args, settings)
        print(json.dumps(result, default=str) if args.json else _forest_summary(result))
        return 0
    result = _nab(args) if args.kind == "nab" else _smd(args)
    if args.json:
        print(json.dumps(result, default=str))
    elif args.kind == "nab":
        _print_nab(result, args.profile)
    else:
        _print_smd(result)
    return 0


def register(sub: Any) -> None:
    """Add `eval` to the top-level sub-parsers."""
    ev = sub.add_parser("eval", help="accuracy: twin fault scenarios, public datasets")
    ev.set_defaults(func=cmd_eval)
    ev.add_argument("kind", choices=("rca", "nab", "smd", "forest"))
    ev.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ev.add_argument(
        "--data", help="dataset folder (default $MENDLOOP_DATASETS or ../shared/datasets/<kind>)"
    )
    ev.add_argument("--files", help="nab: comma-separated subset, e.g. realKnownCause/nyc_taxi.csv")
    ev.add_argument(
        "--profile",
        default="standard",
        choices=("standard", "reward_low_FP", "reward_low_FN"),
        help="nab: profile shown in the text output (--json has all three)",
    )
    ev.add_argument("--machines", help="smd: comma-separated subset (default: 1-6 and 2-1)")
    ev.add_argument(
        "--false-alarm-rate",
        type=float,
        default=0.01,
        help="smd: share of training rows allowed above the threshold (default 0.01)",
    )
    ev.add_argument("--limit", type=int, help="smd: only the first N train and test rows")
    ev.add_argument(
        "--ranker-setting",
        default="synthetic",
        choices=("synthetic", "fixed"),
        help="smd: choose the attribution setting on faults injected into train/ (default)"
        " or use the library default, which was chosen on these machines' labels",
    )
    from evaluation.rca import add_arguments as add_rca_arguments

    add_rca_arguments(ev)  # --quick, --seeds
