"""Chat messages for the stages that matter, as Slack blocks plus a plain-text twin (pure).

    message = stage_message(State.awaiting_approval, note, incident, plan)
    message.payload()        # {"text": ..., "blocks": [...]} for chat.postMessage / a webhook

One payload serves Slack (``blocks``; ``text`` is the notification fallback) and
Mattermost (incoming webhooks ignore ``blocks`` and render ``text`` as Markdown), so
``text`` always carries the whole content, the incident id included (plain webhooks
cannot thread, so every message must say which incident it belongs to).

Stages posted: ``analyzed`` (new incident + top root cause), ``awaiting_approval`` (the
exact plan + Approve/Reject buttons bound to its hash), ``approved``/``rejected``,
``verifying`` (the execution result), ``resolved`` (the verification result),
``rolled_back``, ``escalated`` and ``closed``. Others return None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.chatops.commands import APPROVE_ACTION, REJECT_ACTION, button_value
from kernel.approval import ApprovalPlan, AutomationStatus
from kernel.models import RootCause
from kernel.state import State
from loop.store import IncidentView

SECTION_MAX = 2900  # Slack: 3000 characters per section text
HEADER_MAX = 150
POSTED = frozenset(
    {
        State.analyzed,
        State.awaiting_approval,
        State.approved,
        State.rejected,
        State.verifying,
        State.resolved,
        State.rolled_back,
        State.escalated,
        State.closed,
    }
)

Block = dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """What we post: ``text`` (fallback and Mattermost) and Slack ``blocks``."""

    text: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"text": plain(self.text)}
        if self.blocks:
            body["blocks"] = list(self.blocks)
        return body


def esc(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >) escaped, so data never becomes markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MASS_MENTION = re.compile(r"@(channel|here|all|everyone)\b", re.IGNORECASE)


def plain(text: str) -> str:
    """The ``text`` of a message (Slack's notification fallback, what Mattermost shows):
    escaped as mrkdwn (so ``<!channel>`` or a link in data stays text) and with mass
    mentions (``@channel``, ``@here``, ``@all``) broken by a zero-width space, since
    Mattermost would notify on them. Our own messages use neither."""
    return _MASS_MENTION.sub("@\u200b\\1", esc(text))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, HEADER_MAX)}}


def section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(mrkdwn, SECTION_MAX)}}


def fields(pairs: Iterable[tuple[str, str]]) -> Block:
    """A section of label/value fields (Slack allows 10, 2000 characters each)."""
    items = [
        {"type": "mrkdwn", "text": clip(f"*{esc(k)}*\n{v}", 1900)} for k, v in list(pairs)[:10]
    ]
    return {"type": "section", "fields": items}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_MAX)}]}


def code(text: str, limit: int = SECTION_MAX - 200) -> str:
    """A code block that fits a section; says when it was cut."""
    text = text.replace("```", "'''")
    if len(text) > limit:
        text = text[:limit] + "\n... (cut; the whole of it: GET /v1/incidents/<id>)"
    return f"```{text}```"


def _title(incident: IncidentView, what: str) -> str:
    return f"{what} · {incident.target} · incident {incident.id}"


def _cause_lines(cause: RootCause, evidence: int = 3) -> list[str]:
    lines = [
        f"*{esc(cause.fault)}* on component *{esc(cause.component)}* "
        f"(score {cause.score:.2f}"
        + (f", confidence {cause.confidence:.0%}" if cause.confidence is not None else "")
        + ")",
        esc(cause.why or cause.summary),
    ]
    for e in cause.evidence[:evidence]:
        side = "above" if e.direction == "high" else "below"
        lines.append(f"• `{esc(e.series)}` = {e.value:g} ({side} {e.threshold:g})")
    return lines


def incident_opened(incident: IncidentView, note: str = "") -> ChatMessage:
    """``analyzed``: a new incident and its top root cause (from the RCA report); after a
    person asked for it, the new analysis."""
    report = incident.report
    top = report.top if report else None
    what = "Re-analysed" if note.startswith("re-analysed") else "New incident"
    blocks: list[Block] = [header(_title(incident, what))]
    unexplained = report.unexplained if report else None
    if unexplained is not None:  # no rule names it: ranked without rules, nothing will run
        body = f"*{esc(unexplained.headline())}*\nNo rule explains the findings; nothing is run."
        body += "".join(
            f"\n• {esc(c.component)} {c.confidence:.0%}" for c in unexplained.components[:3]
        )
        top = None
    elif top is None:
        body = "No root cause named yet."
    else:
        body = "\n".join(["*Top root cause*", *_cause_lines(top)])
        others = [f"{c.fault} ({c.score:.2f})" for c in report.candidates[1:4]] if report else []
        if others:
            body += "\nAlso considered: " + esc(", ".join(others))
    blocks.append(section(body))
    facts = [f"incident `{incident.id}`", f"target `{esc(incident.target)}`"]
    if report is not None and report.sqi is not None:
        facts.append(f"SQI {report.sqi:.0f}")
    if report is not None and report.time_to_report_s is not None:
        facts.append(f"reported {report.time_to_report_s:.1f} s after the first abnormal sample")
    blocks.append(context(" · ".join(facts)))
    text = f"{what} {incident.id} on {incident.target}: " + (
        f"{top.fault} on {top.component} (score {top.score:.2f})"
        if top
        else unexplained.headline()
        if unexplained is not None
        else "no root cause yet"
    )
    return ChatMessage(text, tuple(blocks))


def _vars(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), indent=1, sort_keys=True, default=str) if values else "{}"


def plan_blocks(plan: ApprovalPlan) -> list[Block]:
    """The exact plan: what runs where with which variables, its dry run and rollback."""
    check = (
        f"{plan.check_status or 'not run'}, {plan.changed} task(s) would change"
        if plan.check_mode
        else "this playbook has no check mode (no dry run)"
    )
    blocks: list[Block] = [
        fields(
            [
                ("Solution", f"{esc(plan.title)} (`{esc(plan.solution_id)}`)"),
                ("Risk", plan.risk),
                ("Playbook", f"`{esc(plan.playbook)}`"),
                ("Target hosts", ", ".join(f"`{esc(h)}`" for h in plan.hosts) or "none"),
                ("Dry run (check mode)", check),
                ("Requested by", esc(plan.requested_by)),
            ]
        ),
        section("*Extra vars*\n" + code(_vars(plan.extra_vars), 1200)),
    ]
    if plan.changed_tasks:
        tasks = "\n".join(f"• {esc(t)}" for t in plan.changed_tasks[:15])
        blocks.append(section("*Would change*\n" + tasks))
    if plan.diff:
        blocks.append(section("*Check-mode diff*\n" + code("\n".join(plan.diff))))
    rollback = (
        f"`{esc(plan.rollback_playbook)}` with " + code(_vars(plan.rollback_vars), 800)
        if plan.rollback_playbook
        else "no rollback playbook: a failed fix is escalated to a person"
    )
    blocks.append(section("*Rollback plan*\n" + rollback))
    blocks.append(context(f"plan hash `{plan.plan_hash}` (an approval is bound to it)"))
    return blocks


def approval_buttons(incident_id: str, plan: ApprovalPlan) -> Block:
    value = button_value(incident_id, plan.plan_hash)
    return {
        "type": "actions",
        "block_id": f"mendloop_approval_{plan.plan_hash[:16]}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Run this fix?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": clip(
                            f"`{esc(plan.playbook)}` on {', '.join(plan.hosts)} for "
                            f"{esc(plan.target)} ({plan.risk} risk)",
                            300,
                        ),
                    },
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject"},
                "value": value,
            },
        ],
    }


def plan_text(plan: ApprovalPlan) -> str:
    """The plan in plain Markdown (Mattermost, notifications, the ``incident`` command)."""
    lines = [
        f"solution {plan.title} ({plan.solution_id}), risk {plan.risk}",
        f"playbook {plan.playbook} on {', '.join(plan.hosts) or 'no hosts'}",
        f"extra vars {json.dumps(plan.extra_vars, sort_keys=True, default=str)}",
        f"dry run: {plan.check_status or 'not run'}, {plan.changed} task(s) would change",
        f"rollback: {plan.rollback_playbook or 'none'}"
        + (f" with {json.dumps(plan.rollback_vars, sort_keys=True)}" if plan.rollback_vars else ""),
        f"requested by {plan.requested_by}; plan hash {plan.plan_hash}",
    ]
    if plan.diff:
        lines.append("check-mode diff:\n" + code("\n".join(plan.diff), 3000))
    return "\n".join(lines)


def approval_request(incident: IncidentView, plan: ApprovalPlan | None, note: str) -> ChatMessage:
    """``awaiting_approval``: the proposed fix, its exact plan and Approve/Reject buttons."""
    blocks: list[Block] = [header(_title(incident, "Approval needed"))]
    blocks.append(section(esc(note) or "A fix waits for a person's approval."))
    if plan is None:
        blocks.append(section("The plan is not ready yet; ask `incident " + incident.id + "`."))
        text = f"Incident {incident.id} on {incident.target} needs an approval: {note}"
        return ChatMessage(text, tuple(blocks))
    blocks += plan_blocks(plan)
    blocks.append(approval_buttons(incident.id, plan))
    text = (
        f"Incident {incident.id} on {incident.target} needs an approval: {note}\n"
        f"{plan_text(plan)}\n"
        f"approve with: /mendloop approve {incident.id} {plan.plan_hash[:12]}"
    )
    return ChatMessage(text, tuple(blocks))


def decided_request(incident: IncidentView, outcome: str) -> ChatMessage:
    """The approval request once decided: its plan stays visible, the buttons go (so
    nobody clicks a decided request), the outcome is added."""
    plan = incident.plan
    blocks: list[Block] = [header(_title(incident, "Approval decided"))]
    if plan is not None:
        blocks += plan_blocks(plan)
    blocks.append(section(esc(outcome)))
    return ChatMessage(f"Incident {incident.id} on {incident.target}: {outcome}", tuple(blocks))


def automation_message(note: str) -> ChatMessage:
    """Automation paused or resumed (globally or on a target): not about one incident."""
    return ChatMessage(f"mendloop: {note}", (section(f":pause_button: {esc(note)}"),))


def execution_result(incident: IncidentView, note: str) -> ChatMessage:
    """``verifying``: the playbook ran; what it changed; verification has started."""
    execution = incident.execution
    lines = [f":gear: {esc(note)}"]
    if execution is not None and execution.run is not None:
        run = execution.run
        lines.append(
            f"`{esc(run.playbook)}` {run.status} (rc {run.rc}), {run.changed} task(s) changed"
        )
        lines += [f"• {esc(t)}" for t in run.changed_tasks[:10]]
    text = f"Incident {incident.id} on {incident.target}: {note}"
    return ChatMessage(text, (section("\n".join(lines)), context(f"incident `{incident.id}`")))


def verification_result(incident: IncidentView, state: str, note: str) -> ChatMessage:
    """``resolved`` / ``rolled_back`` / ``escalated``: how it ended, with the checks."""
    icon = {"resolved": ":white_check_mark:", "rolled_back": ":rewind:"}.get(
        state, ":rotating_light:"
    )
    label = {
        "resolved": "Resolved",
        "rolled_back": "Rolled back, a person is needed",
        "escalated": "Escalated to a person",
    }.get(state, state)
    lines = [f"{icon} *{label}*", esc(note)]
    verification = incident.verification
    if verification is not None:
        lines.append(f"verification {verification.status} after {verification.waited_s:.1f} s:")
        for check in verification.checks[:10]:
            mark = "ok" if check.healthy else "NOT healthy"
            lines.append(f"• `{esc(check.series)}` = {check.value} ({mark}, {check.threshold:g})")
    text = f"Incident {incident.id} on {incident.target}: {label}: {note}"
    return ChatMessage(text, (section("\n".join(lines)), context(f"incident `{incident.id}`")))


def decision_note(incident: IncidentView, state: str, note: str) -> ChatMessage:
    """``approved`` / ``rejected`` / ``closed``: who decided, in one line."""
    icon = {"approved": ":thumbsup:", "rejected": ":no_entry:"}.get(state, ":lock:")
    text = f"Incident {incident.id} on {incident.target}: {state}: {note}"
    return ChatMessage(text, (section(f"{icon} *{state}* · {esc(note)}"),))


def stage_message(
    state: str, note: str, incident: IncidentView, plan: ApprovalPlan | None
) -> ChatMessage | None:
    """The message for an incident entering ``state`` (None: not a stage we post)."""
    if state not in POSTED:
        return None
    if state == State.analyzed:
        return incident_opened(incident, note)
    if state == State.awaiting_approval:
        return approval_request(incident, plan, note)
    if state == State.verifying:
        return execution_result(incident, note)
    if state in (State.resolved, State.rolled_back, State.escalated):
        return verification_result(incident, str(state), note)
    return decision_note(incident, str(state), note)


def answer(text: str) -> ChatMessage:
    """A reply to a person (command result, approval outcome)."""
    return ChatMessage(text, (section(esc(text)),))


def status_text(incidents: Sequence[IncidentView], automation: AutomationStatus | None) -> str:
    """The ``status`` command: incidents in flight by state, approvals waiting, automation."""
    by_state: dict[str, int] = {}
    for incident in incidents:
        by_state[str(incident.state)] = by_state.get(str(incident.state), 0) + 1
    lines = [
        f"{len(incidents)} incident(s) in flight"
        + (": " + ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())) if by_state else "")
    ]
    waiting = [i for i in incidents if i.state == State.awaiting_approval]
    for incident in waiting[:10]:
        lines.append(f"waiting for approval: {incident.id} on {incident.target} ({incident.fault})")
    if automation is not None:
        if automation.paused:
            lines.append(f"automation PAUSED everywhere by {automation.by}: {automation.reason}")
        for pause in automation.targets:
            lines.append(f"automation paused on {pause.target} by {pause.by}: {pause.reason}")
        if not automation.paused and not automation.targets:
            lines.append("automation running")
    return "\n".join(lines)


def incident_text(incident: IncidentView, plan: ApprovalPlan | None) -> str:
    """The ``incident <id>`` command: state, cause, plan, the last transitions."""
    top = incident.report.top if incident.report else None
    lines = [
        f"incident {incident.id} on {incident.target}: {incident.state}"
        + (f" ({incident.reason})" if incident.reason else ""),
        f"root cause: {top.fault} on {top.component} (score {top.score:.2f})"
        if top
        else "root cause: none yet",
    ]
    if incident.decision is not None:
        d = incident.decision
        via = f" via {incident.remediation.playbook}" if incident.remediation else ""
        lines.append(f"decision: {d.solution_id}{via} ({d.mode}): {d.reason}")
    if plan is not None:
        lines.append(plan_text(plan))
    for step in incident.timeline[-5:]:
        lines.append(f"{step.at:%H:%M:%S} {step.to_state}: {step.note}")
    return "\n".join(lines)
