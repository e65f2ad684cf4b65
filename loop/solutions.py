"""The solution library: playbooks/solutions.yaml, validated against the playbooks on disk.

    library = load_solutions(settings.playbooks_dir)
    library["sol-cache-scale-out"].playbook      # 'cache_scale_out.yml'

A bad entry, a duplicate id or a playbook that is not there refuses the file whole.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from loop.errors import PlaybookError
from loop.models import Solution

SOLUTIONS_FILE = "solutions.yaml"


def load_solutions(playbooks_dir: Path) -> dict[str, Solution]:
    path = playbooks_dir / SOLUTIONS_FILE
    try:
        text = path.read_text()
        entries = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise PlaybookError(f"{path}: cannot read the solution library: {exc}") from exc
    if not isinstance(entries, list):
        raise PlaybookError(f"{path}: expected a list of solutions")
    library: dict[str, Solution] = {}
    for index, entry in enumerate(entries):
        where = f"{path} entry #{index + 1}"
        try:
            solution = Solution.model_validate(entry)
        except ValidationError as exc:
            raise PlaybookError(f"{where}: {exc}") from exc
        if solution.id in library:
            raise PlaybookError(f"{where}: solution id {solution.id} is defined twice")
        for playbook in filter(None, (solution.playbook, solution.rollback_playbook)):
            if not (playbooks_dir / playbook).is_file():
                raise PlaybookError(f"{where}: playbook {playbook} not found in {playbooks_dir}")
        library[solution.id] = solution
    return library
