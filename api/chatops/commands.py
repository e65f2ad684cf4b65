"""What chat sends us, parsed into typed values (pure; the router acts on them).

    users = parse_users("U123=alice:approver,U456=bob:operator")   # chat user ids only
    principal = who(users, user_id="U123")                   # Principal(via="chat")
    command = parse_command("reject 5aaded876eda not during peak")
    action = parse_action(json.loads(form["payload"]))        # a button press (block_actions)

Commands (``/mendloop <text>``): ``status``, ``incident <id>``, ``approve <id> <plan
hash>`` (parsed without the hash too, so the answer can name the one to approve),
``reject <id> [reason]``, ``pause [target|all] [reason]``, ``resume [target|all]``,
``help``. Each names the least role it needs (``NEEDS``).
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
    "usage: status | incident <id> | approve <id> <plan hash> | reject <id> [reason] | "
    "pause [target|all] [reason] | resume [target|all]"
)

# patterns are matched whole (``fullmatch``): "$" alone would let a trailing newline in
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_HASH = re.compile(r"[0-9a-f]{8,64}")
# chat user ids: Slack's (U... or W..., upper case) or Mattermost's (26 lower-case
# characters); a Slack user *name* is lower case, so a name can never pass for an id
_USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}|[a-z0-9]{26}")
# what a chat service may send as a user id at all (anything else is a malformed request)
_ANY_USER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_URL_MAX = 2000


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
    response_url: str | None
    thread_ts: str | None
    channel: str | None

    @property
    def needs(self) -> Role:
        return NEEDS[self.verb]


def parse_users(spec: str) -> dict[str, tuple[str, Role]]:
    """``"U123=alice:approver,U456=bob:operator"`` -> chat user id -> (name, role).

    Keys are chat user *ids* only (Slack ``U...``/``W...``, Mattermost's 26 characters):
    a chat user can rename themselves, so a name never grants a role. A key that is not an
    id (an old map keyed by user name) is refused with what to write instead.

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
            raise ChatInputError(f"{item!r}: expected CHAT_USER_ID=name:role")
        if not _USER_ID.fullmatch(key):
            raise ChatInputError(
                f"{item!r}: {key!r} is not a chat user id (Slack: U0ABC123 or W0ABC123, "
                "Mattermost: 26 lower-case characters); user names are not accepted any more, "
                "since anyone can rename themselves: map the user's id (Slack: profile, "
                "'Copy member ID')"
            )
        if not _ID.fullmatch(name):
            raise ChatInputError(f"{item!r}: {name!r} is not a name (letters, digits, _.:-)")
        if key in users:
            raise ChatInputError(f"{item!r}: {key} is mapped twice")
        try:
            users[key] = (name, Role(role))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise ChatInputError(f"{item!r}: unknown role {role!r} ({roles})") from None
    return users


def user_id_of(value: object) -> str:
    """A chat user id as sent (``""`` when none), or ChatInputError when it is malformed."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _ANY_USER_ID.fullmatch(value):
        raise ChatInputError("malformed user id")
    return value


def who(users: Mapping[str, tuple[str, Role]], user_id: str) -> Principal:
    """The chat user as a Principal, mapped by user id only; others are viewers named
    ``chat:<id>`` (so they can never pass for a mapped person)."""
    if user_id and user_id in users:
        name, role = users[user_id]
        return Principal(name=name, role=role, via="chat")
    return Principal(name=f"chat:{user_id or 'unknown'}", role=Role.viewer, via="chat")


def _incident_id(word: str | None, verb: str) -> str:
    if not word:
        raise ChatInputError(f"{verb} needs an incident id. {USAGE}")
    if not _ID.fullmatch(word):
        raise ChatInputError(f"{_shown(word)} is not an incident id")
    return word


def _scope(word: str | None) -> str | None:
    if word is None or word.lower() in ("all", "*", "everywhere"):
        return None
    if not _ID.fullmatch(word):
        raise ChatInputError(f"{_shown(word)} is not a target name")
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
    if verb == "help":
        return Command("help")
    if verb == "status":
        return Command("status")
    if verb == "incident":
        return Command("incident", incident_id=_incident_id(args[0] if args else None, verb))
    if verb == "approve":
        incident_id = _incident_id(args[0] if args else None, verb)
        plan_hash = args[1].lower() if len(args) > 1 else None
        if plan_hash is not None and not _HASH.fullmatch(plan_hash):
            raise ChatInputError(f"{_shown(args[1])} is not a plan hash (8-64 hex digits)")
        if len(args) > 2:
            raise ChatInputError(f"approve takes an id and optionally a plan hash. {USAGE}")
        return Command("approve", incident_id=incident_id, plan_hash=plan_hash)
    if verb == "reject":
        incident_id = _incident_id(args[0] if args else None, verb)
        return Command("reject", incident_id=incident_id, comment=" ".join(args[1:])[:2000])
    if verb == "pause" or verb == "resume":
        target = _scope(args[0] if args else None)
        comment = " ".join(args[1:])[:2000] if verb == "pause" else ""
        return Command("pause" if verb == "pause" else "resume", target=target, comment=comment)
    raise ChatInputError(f"unknown command {_shown(verb)}. {USAGE}")


def button_value(incident_id: str, plan_hash: str | None) -> str:
    """What an Approve/Reject button carries: the incident and the exact plan's hash."""
    return f"{incident_id}:{plan_hash or ''}"


def parse_action(payload: Mapping[str, Any]) -> Action:
    """A Slack ``block_actions`` payload (the first action) as an Action; ChatInputError
    (a 400) for anything else. Every field is checked for its type and shape: the payload
    is hostile even when signed (the signing secret may leak)."""
    if payload.get("type") != "block_actions":
        raise ChatInputError(f"unsupported interaction type {_shown(payload.get('type'))}")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise ChatInputError("the interaction names no action")
    action = actions[0]
    verbs: dict[str, Literal["approve", "reject"]] = {
        APPROVE_ACTION: "approve",
        REJECT_ACTION: "reject",
    }
    action_id = action.get("action_id")
    verb = verbs.get(action_id) if isinstance(action_id, str) else None
    if verb is None:
        raise ChatInputError(f"unknown action {_shown(action_id)}")
    value = action.get("value", "")
    if not isinstance(value, str):
        raise ChatInputError("the button carries no incident")
    incident_id, _, plan_hash = value.partition(":")
    incident_id = _incident_id(incident_id, verb)
    if plan_hash and not _HASH.fullmatch(plan_hash):
        raise ChatInputError("the button carries a malformed plan hash")
    user, container, message, channel = (
        field if isinstance(field := payload.get(key), dict) else {}
        for key in ("user", "container", "message", "channel")
    )
    response_url = payload.get("response_url")
    if response_url is not None and (
        not isinstance(response_url, str) or len(response_url) > _URL_MAX
    ):
        raise ChatInputError("malformed response_url")
    thread_ts = (
        message.get("thread_ts")
        or container.get("thread_ts")
        or message.get("ts")
        or container.get("message_ts")
    )
    return Action(
        verb=verb,
        incident_id=incident_id,
        plan_hash=plan_hash or None,
        user_id=user_id_of(user.get("id")),
        response_url=response_url or None,
        thread_ts=_token(thread_ts),
        channel=_token(channel.get("id")),
    )


def _token(value: object) -> str | None:
    """A chat-side identifier (ts, channel id) when it looks like one, else None."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _shown(value: object, limit: int = 60) -> str:
    """A hostile value in a message: quoted, escaped (no raw newline) and cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
