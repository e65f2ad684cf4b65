"""The metric catalog and rule files (YAML), and the code that turns them into behaviour.

A site's ``metrics.yaml`` is its metric catalog; its ``rules/*.yaml`` hold analysis rules
that ``rules.compiler`` compiles into a durable_rules ruleset (docs/SITES.md, docs/RULES.md).
"""

from kernel.config import TWIN_PACK

# the power-marketing pack's rules: the default of the pure helpers (tests, evaluation);
# a daemon reads the rules its site composed (sites/)
RULES_DIR = TWIN_PACK / "rules"
