"""What chat sends us, parsed into typed values (pure; the router acts on them).

    users = parse_users("U123=alice:approver,U456=bob:operator")
    principal = who(users, user_id="U123", user_name="alice.s")   # Principal(via="chat")
    command = parse_command("reject 5aaded876eda not during peak")
    action = parse_action(json.loads(form["payload"]))        # a button press (block_actions)

Commands (``/mendloop <text>``): ``status``, ``incident <id>``, ``approve <id> [plan
hash]``, ``reject <id> [reason]``, ``pause [target|all] [reason]``, ``resume
[target|all]``, ``help``. Each names the least role it needs (``NEEDS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from api.auth import Principal, Role

APPROVE_ACTION = "mendloop_approve"
REJECT_ACTION = "mendloop_reject"

Verb = Literal["help", "status", "incident", "approve", "reject", "pause", "resume"]

NEEDS: dict[str, Role] = {
    "help": Role.viewer,
    "status": Role.viewer,
    "incident": Role.viewer,
    "approve": Role.approver,
    "reject": Role.approver,
    "pause": Role.operator,
    "resume": Role.operator,
}

USAGE = (
    "usage: status | incident <id> | approve <id> [plan hash] | reject <id> [reason] | "
    "pause [target|all] [reason] | resume [target|all]"
)

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HASH = re.compile(r"^[0-9a-f]{8,64}$")


class ChatInputError(ValueError):
    """A command or payload we cannot act on; the message goes back to the user."""


@dataclass(frozen=True)
class Command:
    verb: Verb
    incident_id: str | None = None
    target: str | None = None  # pause/resume: None means everywhere
    plan_hash: str | None = None  # approve: the plan (or a prefix of its hash) approved
    comment: str = ""

    @property
    def needs(self) -> Role:
        return NEEDS[self.verb]


@dataclass(frozen=True)
class Action:
    """One button press: approve or reject the plan bound in the button's value."""

    verb: Literal["approve", "reject"]
    incident_id: str
    plan_hash: str | None
    user_id: str
    user_name: str
    response_url: str | None
    thread_ts: str | None
    channel: str | None

    @property
    def needs(self) -> Role:
        return NEEDS[self.verb]


def parse_users(spec: str) -> dict[str, tuple[str, Role]]:
    """``"U123=alice:approver,bob=bob:operator"`` -> chat user id or name -> (name, role).

    >>> parse_users("U1=alice:approver")
    {'U1': ('alice', <Role.approver: 'approver'>)}
    """
    users: dict[str, tuple[str, Role]] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        key, eq, rest = item.partition("=")
        name, colon, role = rest.partition(":")
        key, name, role = key.strip(), name.strip(), role.strip()
        if not (eq and colon and key and name and role):
            raise ChatInputError(f"{item!r}: expected CHAT_USER=name:role")
        try:
            users[key] = (name, Role(role))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise ChatInputError(f"{item!r}: unknown role {role!r} ({roles})") from None
    return users


def who(users: Mapping[str, tuple[str, Role]], user_id: str, user_name: str = "") -> Principal:
    """The chat user as a Principal: mapped by id first, then by name; others are viewers
    named ``chat:<id>`` (so they can never pass for a mapped person)."""
    for key in (user_id, user_name):
        if key and key in users:
            name, role = users[key]
            return Principal(name=name, role=role, via="chat")
    return Principal(name=f"chat:{user_id or user_name or 'unknown'}", role=Role.viewer, via="chat")


def _incident_id(word: str | None, verb: str) -> str:
    if not word:
        raise ChatInputError(f"{verb} needs an incident id. {USAGE}")
    if not _ID.match(word):
        raise ChatInputError(f"{word!r} is not an incident id")
    return word


def _scope(word: str | None) -> str | None:
    if word is None or word.lower() in ("all", "*", "everywhere"):
        return None
    if not _ID.match(word):
        raise ChatInputError(f"{word!r} is not a target name")
    return word


def parse_command(text: str) -> Command:
    """The text after the slash command, as a Command (ChatInputError with the usage).

    >>> parse_command("reject abc123 not during peak")
    Command(verb='reject', incident_id='abc123', target=None, plan_hash=None, comment='not during peak')
    """  # noqa: E501
    words = text.split()
    if not words:
        return Command("help")
    verb, args = words[0].lower(), words[1:]
    if verb in ("help", "status"):
        return Command(verb)  # type: ignore[arg-type]
    if verb == "incident":
        return Command("incident", incident_id=_incident_id(args[0] if args else None, verb))
    if verb == "approve":
        incident_id = _incident_id(args[0] if args else None, verb)
        plan_hash = args[1].lower() if len(args) > 1 else None
        if plan_hash is not None and not _HASH.match(plan_hash):
            raise ChatInputError(f"{args[1]!r} is not a plan hash (8-64 hex digits)")
        if len(args) > 2:
            raise ChatInputError(f"approve takes an id and optionally a plan hash. {USAGE}")
        return Command("approve", incident_id=incident_id, plan_hash=plan_hash)
    if verb == "reject":
        incident_id = _incident_id(args[0] if args else None, verb)
        return Command("reject", incident_id=incident_id, comment=" ".join(args[1:])[:2000])
    if verb in ("pause", "resume"):
        target = _scope(args[0] if args else None)
        comment = " ".join(args[1:])[:2000] if verb == "pause" else ""
        return Command(verb, target=target, comment=comment)  # type: ignore[arg-type]
    raise ChatInputError(f"unknown command {verb!r}. {USAGE}")


def button_value(incident_id: str, plan_hash: str | None) -> str:
    """What an Approve/Reject button carries: the incident and the exact plan's hash."""
    return f"{incident_id}:{plan_hash or ''}"


def parse_action(payload: Mapping[str, Any]) -> Action:
    """A Slack ``block_actions`` payload (the first action) as an Action."""
    if payload.get("type") != "block_actions":
        raise ChatInputError(f"unsupported interaction type {payload.get('type')!r}")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise ChatInputError("the interaction names no action")
    action = actions[0]
    verbs = {APPROVE_ACTION: "approve", REJECT_ACTION: "reject"}
    verb = verbs.get(str(action.get("action_id", "")))
    if verb is None:
        raise ChatInputError(f"unknown action {action.get('action_id')!r}")
    incident_id, _, plan_hash = str(action.get("value", "")).partition(":")
    incident_id = _incident_id(incident_id, verb)
    if plan_hash and not _HASH.match(plan_hash):
        raise ChatInputError("the button carries a malformed plan hash")
    user = payload.get("user") if isinstance(payload.get("user"), dict) else {}
    container = payload.get("container") if isinstance(payload.get("container"), dict) else {}
    message = payload.get("message") if isinstance(payload.get("message"), dict) else {}
    channel = payload.get("channel") if isinstance(payload.get("channel"), dict) else {}
    thread_ts = (
        message.get("thread_ts")
        or container.get("thread_ts")
        or message.get("ts")
        or container.get("message_ts")
    )
    return Action(
        verb=verb,  # type: ignore[arg-type]
        incident_id=incident_id,
        plan_hash=plan_hash or None,
        user_id=str(user.get("id", "")),
        user_name=str(user.get("username") or user.get("name") or ""),
        response_url=str(payload["response_url"]) if payload.get("response_url") else None,
        thread_ts=str(thread_ts) if thread_ts else None,
        channel=str(channel.get("id")) if channel.get("id") else None,
    )
