"""Rule files and the metric catalog (YAML), and the code that turns them into behaviour.

``rules/metrics.yaml`` is the metric catalog; every other ``rules/*.yaml`` holds analysis
rules that ``rules.compiler`` compiles into a durable_rules ruleset.
"""

from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent
