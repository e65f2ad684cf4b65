"""`mendloop eval ...`: accuracy figures for docs/EVALUATION.md.

With --json exactly one JSON object goes to stdout; progress goes to stderr.

    mendloop eval nab --json                       # whole 58-file corpus, ~7 min on 2 cores
    mendloop eval nab --files realKnownCause/nyc_taxi.csv,realKnownCause/rogue_agent_key_hold.csv
    mendloop eval smd --json                       # leave-one-machine-out over every machine
    mendloop eval smd --machines machine-1-6,machine-2-1 --dataset DIR
    mendloop eval smd --protocol per-machine --machines machine-1-6 --json
    mendloop eval trainticket --json               # rule-free component RCA, 45 faults
    mendloop eval components --json                # the same ranking on the twin's faults
    mendloop eval forest --json                    # IsolationForest groups on the twin
    mendloop eval packs --packs redis --json       # real services: detection, MTTR per path
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kernel.config import REPO_ROOT, TWIN_PACK, Settings
from kernel.errors import MendloopError

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


MIN_LOMO_ROWS = 100  # fewer training rows cannot give a quantile threshold worth the name


def _smd_machines(root: Path, wanted: list[str] | None) -> list[str]:
    """The machines asked for (default: every machine of the folder), each checked."""
    found = sorted(p.name[: -len(".txt.gz")] for p in (root / "test").glob("*.txt.gz"))
    machines = wanted or found
    missing = [
        m
        for m in machines
        if not all(
            (root / part / f"{m}{ext}").is_file()
            for part, ext in (
                ("train", ".txt.gz"),
                ("test", ".txt.gz"),
                ("test_label", ".txt"),
                ("interpretation_label", ".txt"),
            )
        )
    ]
    if missing or not machines:
        raise MendloopError(f"no SMD data for {', '.join(missing) or 'any machine'} in {root}")
    return machines


def _smd(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from evaluation.smd import evaluate_smd

    root = _data_root(args, "smd")
    machines = _smd_machines(root, _split(args.machines))
    if args.protocol == "lomo":
        from evaluation.smd_events import evaluate_events

        if len(machines) < 2:
            raise MendloopError(
                "leave-one-machine-out needs at least 2 machines; add --protocol per-machine"
            )
        if args.limit is not None and args.limit < MIN_LOMO_ROWS:
            raise MendloopError(f"--limit must be at least {MIN_LOMO_ROWS} rows")
        cache = None if args.no_cache else settings.var_dir / "cache" / "smd-lomo"
        try:
            return evaluate_events(root, machines, args.limit, cache, progress=_progress)
        except (ValueError, OSError) as exc:  # a damaged data file: said, not a traceback
            raise MendloopError(f"could not read the SMD data in {root}: {exc}") from exc
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


def _trainticket(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from evaluation.trainticket import DAYS
    from evaluation.trainticket_cv import evaluate_trainticket

    root = _data_root(args, "nezha-trainticket")
    days = _split(args.days) or list(DAYS)
    missing = [d for d in days if not (root / d / f"{d}-fault_list.json").is_file()]
    if missing:
        raise MendloopError(f"no TrainTicket day {', '.join(missing)} in {root}")
    if len(days) < 2:
        raise MendloopError("leave-one-day-out needs at least 2 days")
    cache = None if args.no_cache else settings.var_dir / "cache" / "trainticket"
    try:
        return evaluate_trainticket(root, days, progress=_progress, cache_dir=cache)
    except (ValueError, KeyError, OSError, IndexError) as exc:  # damaged data: said, not raised
        raise MendloopError(f"could not read the TrainTicket data in {root}: {exc!r}") from exc


def _print_trainticket(r: dict[str, Any]) -> None:
    for name in ("leave_one_day_out", "leave_one_fault_type_out"):
        res = r[name]
        print(f"{name.replace('_', '-')}: {res['overall']}")
        for kind, acc in res["per_fault_type"].items():
            k = " ".join(f"AS@{n} {acc[f'AS@{n}']}" for n in (1, 3, 5))
            print(f"  {kind} ({acc['faults']} faults): {k}")
    base = r.get("baselines")
    if base:
        print(f"metrics-free control (services by callers): {base['topology_only']['overall']}")
        micro = base["microrca"]
        print(
            f"MicroRCA re-implemented: published parameters "
            f"{micro['published_parameters']['overall']}, leave-one-day-out "
            f"{micro['leave_one_day_out']['overall']}"
        )
    for name, pub in r["published"].items():
        print(f"published {name}: {pub}")
    print(f"{r['faults']} faults, {r['settings']} settings, {r['run_time_s']} s")


def _forest(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from evaluation.forest_twin import evaluate_forest
    from evaluation.rca import DEV_SEEDS
    from rules.catalog import load_catalog

    seeds = tuple(int(s) for s in _split(args.seeds) or ()) or DEV_SEEDS
    catalog = load_catalog(TWIN_PACK / "metrics.yaml")  # the twin's
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
    if "protocol" in r:  # leave-one-machine-out
        for m, res in r["machines"].items():
            hr, base = res["hitrate_per_point"], res["abs_z_hitrate_per_point"]
            print(
                f"{m}: F1 point-wise {res['point_wise']['f1']}, point-adjusted "
                f"{res['point_adjusted']['f1']}, segments {res['segments_found']}/"
                f"{res['segments']} ({res['detector']}); HitRate per point @100% "
                f"{hr['@100%']} @150% {hr['@150%']} (|z|: {base['@100%']} / {base['@150%']})"
            )
        mean = r["mean"]
        print(
            f"held-out mean: HitRate per point {mean['hitrate_per_point']}, |z| "
            f"{mean['abs_z_hitrate_per_point']}; F1 point-wise {mean['f1_point_wise']}, "
            f"point-adjusted {mean['f1_point_adjusted']}, segments {mean['segments_found']}/"
            f"{mean['segments']}  ({r['run_time_s']} s)"
        )
        return
    for m, res in r["machines"].items():
        print(
            f"{m}: F1 point-wise {res['point_wise']['f1']}, point-adjusted "
            f"{res['point_adjusted']['f1']}; HitRate per point @100% "
            f"{res['hitrate_per_point']['@100%']} @150% {res['hitrate_per_point']['@150%']}"
            f" (ranker setting {res['ranker_setting']})"
        )
    print(f"mean: {r['mean']}  ({r['run_time_s']} s)")


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    if args.kind in getattr(args, "more", {}):
        return int(args.more[args.kind](args, settings))
    if args.kind == "rca":
        from evaluation.rca import run_rca_eval, summary

        result = run_rca_eval(settings, args)
        print(json.dumps(result, default=str) if args.json else summary(result))
        return 0
    if args.kind == "forest":
        result = _forest(args, settings)
        print(json.dumps(result, default=str) if args.json else _forest_summary(result))
        return 0
    if args.kind == "components":
        from evaluation.twin_components import evaluate_components
        from rules.catalog import load_catalog

        catalog = load_catalog(TWIN_PACK / "metrics.yaml")  # the twin's
        result = evaluate_components(catalog, quick=bool(args.quick), progress=_progress)
        if args.json:
            print(json.dumps(result, default=str))
        else:
            print(
                f"twin, rule-free component ranking, {result['scenarios']} scenarios: top-1 "
                f"{result['top1']}, top-3 {result['top3']} (setting {result['setting']})"
            )
        return 0
    if args.kind == "trainticket":
        result = _trainticket(args, settings)
        if args.json:
            print(json.dumps(result, default=str))
        else:
            _print_trainticket(result)
        return 0
    result = _nab(args) if args.kind == "nab" else _smd(args, settings)
    if args.json:
        print(json.dumps(result, default=str))
    elif args.kind == "nab":
        _print_nab(result, args.profile)
    else:
        _print_smd(result)
    return 0


def register(sub: Any, more: Mapping[str, Callable[..., int]] | None = None) -> None:
    """Add `eval` to the top-level sub-parsers; ``more``: kinds implemented above this
    layer (`packs`: mendloop/packeval.py, it starts the daemon), kind -> func(args, settings)."""
    extra = dict(more or {})
    ev = sub.add_parser("eval", help="accuracy: twin fault scenarios, public datasets, packs")
    ev.set_defaults(func=cmd_eval, more=extra)
    ev.add_argument(
        "kind", choices=("rca", "nab", "smd", "trainticket", "components", "forest", *extra)
    )
    ev.add_argument("--packs", help="packs: comma-separated packs (default: every scenario)")
    ev.add_argument("--paths", help="packs: comma-separated pull,push,alertmanager (default all)")
    ev.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ev.add_argument(
        "--data",
        "--dataset",
        dest="data",
        help="dataset folder (default $MENDLOOP_DATASETS or ../shared/datasets/<kind>)",
    )
    ev.add_argument("--files", help="nab: comma-separated subset, e.g. realKnownCause/nyc_taxi.csv")
    ev.add_argument(
        "--profile",
        default="standard",
        choices=("standard", "reward_low_FP", "reward_low_FN"),
        help="nab: profile shown in the text output (--json has all three)",
    )
    ev.add_argument("--machines", help="smd: comma-separated subset (default: every machine)")
    ev.add_argument(
        "--protocol",
        default="lomo",
        choices=("lomo", "per-machine"),
        help="smd: settings chosen leave-one-machine-out (default) or per machine"
        " (--ranker-setting)",
    )
    ev.add_argument(
        "--no-cache",
        action="store_true",
        help="smd, trainticket: recompute the cached tables under var/cache",
    )
    ev.add_argument("--days", help="trainticket: comma-separated days (default: both)")
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
        help="smd --protocol per-machine: choose the attribution setting on faults injected"
        " into train/ (default) or use the library default",
    )
    from evaluation.rca import add_arguments as add_rca_arguments

    add_rca_arguments(ev)  # --quick, --seeds


def register_rca(sub: Any) -> None:
    """Add `rca` (offline rule-free RCA on a user's files) to the top-level sub-parsers;
    the work is in :mod:`evaluation.offline_rca`, imported when the command runs."""
    p = sub.add_parser("rca", help="rule-free RCA on your own metrics history (files)")
    p.set_defaults(func=_cmd_rca)
    add = p.add_argument
    add("--metrics", required=True, help="long CSV or JSON Lines: component,metric,timestamp,value")
    add("--topology", help="edge list CSV (component,depends_on) or domain YAML")
    add("--symptom", help="COMPONENT:METRIC the walk starts from")
    add("--start", help="window start, epoch s or ISO 8601 (default: --window before --end)")
    add("--end", help="window end (default: the last sample)")
    add("--window", type=float, default=300.0, help="seconds, without --start (default 300)")
    add("--baseline", type=float, help="seconds before --start to compare with (default: all)")
    add("--top", type=int, default=10, help="components to show (default 10)")
    add("--json", action="store_true", help="one JSON object on stdout")


def _cmd_rca(args: argparse.Namespace, settings: Settings) -> int:
    from evaluation.offline_rca import cmd_rca

    return cmd_rca(args)
