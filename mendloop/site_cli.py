"""`mendloop site check` and `mendloop init DIR`: validate a site, scaffold an empty one.

mendloop [--site DIR] site check [--json]   # every problem as file:line: reason; exit 2
mendloop init DIR                           # a working empty site (docs/SITES.md)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kernel.config import Settings
from mendloop.output import print_json, stderr_progress
from sites import check_site
from sites.scaffold import scaffold

EXIT_PROBLEMS = 2


def cmd_site_check(args: argparse.Namespace, settings: Settings) -> int:
    report = check_site(settings.site_dir)
    if args.json:
        print_json(report.as_dict())
    else:
        for problem in report.problems:
            print(problem)
        for override in report.overrides:
            print(f"override: {override}")
        if report.ok:
            counts = report.as_dict()["counts"]
            shown = ", ".join(f"{v} {k}" for k, v in counts.items())
            print(
                f"ok: site {settings.site_dir} (packs: {', '.join(report.packs) or 'none'}): "
                f"{shown}"
            )
    return 0 if report.ok else EXIT_PROBLEMS


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    root = Path(args.dir)
    written = scaffold(root)
    for path in written:
        stderr_progress(f"wrote {path}")
    report = check_site(root)
    for problem in report.problems:  # none, unless the directory held files already
        print(problem)
    print(f"site {root}: next, `mendloop --site {root} site check` and docs/ONBOARDING.md")
    return 0 if report.ok else EXIT_PROBLEMS
