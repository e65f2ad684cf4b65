"""The scale-test generator: deterministic, valid against the domain, varied but bounded."""

from kernel.config import REPO_ROOT
from kernel.domain import Domain
from loop.solutions import load_solutions
from mendloop.generator import PROFILES, Generator
from rules.catalog import load_catalog

DOMAIN = Domain.load()
CATALOG = load_catalog(REPO_ROOT / "packs" / "power-marketing" / "metrics.yaml")
SOLUTIONS = load_solutions(REPO_ROOT / "packs" / "power-marketing")


def make(stories=50) -> Generator:
    return Generator(DOMAIN, CATALOG, list(SOLUTIONS.values()), stories_per_pool=stories)


def test_same_seed_same_cases_and_every_case_is_importable():
    cases = list(make().cases(3000, seed=1))
    assert cases == list(make().cases(3000, seed=1))
    assert cases != list(make().cases(3000, seed=2))
    assert all(DOMAIN.problems(c, CATALOG) == [] for c in cases)
    assert {c.fault for c in cases} == set(DOMAIN.faults) == set(PROFILES)
    assert len({c.id for c in cases}) == 3000


def test_texts_repeat_like_stock_phrases_but_the_rest_varies():
    cases = list(make(stories=50).cases(6000, seed=3))
    texts = {c.text for c in cases}
    assert len(texts) < 6000 / 3  # bounded pools of stories
    assert len(
        {(c.text, c.device_type, tuple(sorted(c.environment.items()))) for c in cases}
    ) > len(texts)


def test_outcomes_mostly_resolved_by_a_fix_of_the_fault_some_wrong_fixes_fail():
    generator = make()
    cases = list(generator.cases(6000, seed=4))
    right = [c for c in cases if c.solution_id in {s.id for s in generator.fixes[c.fault]}]
    wrong = [c for c in cases if c not in right]
    assert 0.85 < sum(c.outcome == "resolved" for c in cases) / len(cases) < 0.95
    assert wrong and all(c.outcome == "failed" for c in wrong)


def test_queries_use_other_words_than_cases():
    generator = make()
    case_texts = {c.text for c in generator.cases(2000, seed=5)}
    queries = generator.queries(200, seed=6)
    assert not {q.query.text for q in queries} & case_texts
    assert all(q.query.fault == q.fault for q in queries)
    assert all(q.query.fault is None for q in generator.queries(20, seed=6, named_fault=False))
