"""Hostile names and a tampered graph, end to end on real components: the engine (Neo4j,
the decider, the earned autonomy, SQLite), ansible-runner with the real playbooks, the
twin's HTTP control surface.

The incidents are opened on the engine's store the way the analyser leaves them, so the
intake's own validation (which refuses such target names at the edge) is bypassed on
purpose: this proves the defence in depth of the execution layer. A target whose name is
a template reaches the dry run as that very name, a target carrying a ``pipe`` lookup
never runs it, and a graph Solution pointing at a playbook outside the library is
refused before anything runs."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from kernel.state import State
from mendloop.service import build_engine
from twin.model import Twin
from twin.server import TwinRunner

from ..conftest import analyzed
from .conftest import empty_graph, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]

LITERAL = "e2e-{{7*7}}"  # a twin target named like a template
RENDERED = "e2e-49"  # what a runner that evaluated it would have acted on
TAMPERED = "e2e-graph"
EVIL = """\
- name: Not a playbook of the library
  hosts: all
  gather_facts: false
  tasks:
    - name: Leave a mark, even in check mode
      ansible.builtin.file:
        path: "{{ mark | default('%s') }}"
        state: touch
      check_mode: false
"""


def test_hostile_targets_and_a_tampered_graph_execute_nothing(neo4j_settings, tmp_path: Path):
    empty_graph(neo4j_settings)
    mark = tmp_path / f"pwned-{uuid.uuid4().hex[:8]}"
    lookup = f"e2e-{{{{ lookup('pipe', 'touch {mark}-lookup') }}}}"
    evil = tmp_path / "outside" / "evil.yml"
    evil.parent.mkdir()
    evil.write_text(EVIL % f"{mark}-evil")
    settings = settings_for(neo4j_settings, tmp_path / "var")
    with TwinRunner(Twin(targets=(LITERAL, RENDERED), seed=3), tick_s=1.0, port=0) as twin:
        with twin.locked() as model:
            for target in (LITERAL, RENDERED):
                model.inject(target, "cache_saturation")
        engine = build_engine(settings, {"twin_url": twin.url}, progress=lambda _: None)
        try:
            for target in (LITERAL, lookup, TAMPERED):  # fixes wait for a person: dry run
                engine.operations.pause(target, by="e2e", reason="hold every fix for approval")
            spec = engine.library["sol-db-io-tune"]
            playbooks = engine.runner.project_dir(spec.pack)
            outside = os.path.relpath(evil, playbooks)  # ../../../tmp/.../evil.yml
            engine.graph.upsert_solution(spec.solution().model_copy(update={"playbook": outside}))
            ids = {
                LITERAL: analyzed(engine, LITERAL),
                lookup: analyzed(engine, lookup),
                TAMPERED: analyzed(engine, TAMPERED, "db-io-wait-saturation"),
            }

            async def main():
                await engine.start()
                try:
                    return {t: await engine.wait_settled(i, 240) for t, i in ids.items()}
                finally:
                    await engine.stop()

            settled = asyncio.run(main())
            runs = {t: engine.ledger.runs(i) for t, i in ids.items()}
            refusals = dict(engine.decider.refusals)
        finally:
            engine.close()
        with twin.locked() as model:
            actions = {t: model.state(t)["actions"] for t in (LITERAL, RENDERED)}
            faults = {t: model.state(t)["faults"] for t in (LITERAL, RENDERED)}

    assert sorted(p.name for p in tmp_path.glob("pwned-*")) == []  # nothing ran, nowhere

    # the template-named target: decided through Neo4j, dry-run as its literal name
    literal = settled[LITERAL]
    assert literal.state == State.awaiting_approval, literal.reason
    assert literal.remediation.extra_vars["target"] == LITERAL
    assert literal.plan.changed == 1  # the twin knows "e2e-{{7*7}}" and it is saturated
    assert [(r.phase, r.status) for r in runs[LITERAL]] == [("plan", "successful")]
    said = [e.get("msg", "") for e in runs[LITERAL][0].events]
    assert any(f"for {LITERAL};" in m for m in said), said
    assert actions == {LITERAL: [], RENDERED: []}  # a dry run changes nothing
    assert faults == {LITERAL: ["cache_saturation"], RENDERED: ["cache_saturation"]}

    # the lookup-carrying target: its dry run ran and failed on the literal text
    hostile = settled[lookup]
    assert hostile.state == State.escalated, hostile.reason
    assert [(r.phase, r.status) for r in runs[lookup]] == [("plan", "failed")]
    assert "lookup('pipe', 'touch" in hostile.reason, hostile.reason

    # the tampered graph: refused before any run
    tampered = settled[TAMPERED]
    assert tampered.state == State.escalated
    assert "decision refused: sol-db-io-tune: the graph names playbook" in tampered.reason
    assert runs[TAMPERED] == [] and refusals == {"library_mismatch": 1}
