"""The chat endpoints: signed button presses and slash commands (the adapter around the
pure parsing and signing, acting on the engine as a chat user's Principal).

    router = chat_router(ops)              # ops: api.chatops.ChatOps
    app.include_router(router)             # create_app(..., chat=router)

``POST /v1/chat/actions``: Slack interactivity (form field ``payload``, a
``block_actions`` JSON); ``POST /v1/chat/commands``: a slash command (form fields
``text``, ``user_id``, ``user_name``, ``response_url``). Both verify Slack's signature
first (api/chatops/signing.py) and answer 401 when it is missing, malformed, wrong, outside
the 5-minute window or replayed; that refusal is audited as ``unauthenticated``. A signed
request that cannot be read (not a form, bad JSON, a field of the wrong type or shape) is
a 400 with the reason. Every refusal is logged and counted by reason (``ops.refusals``).
Then the chat user becomes a Principal (``via="chat"``) through MENDLOOP_CHAT_USERS, by
user id only (unknown users are viewers), the command's least role is enforced, and the
engine acts: an approval carries
the plan hash from the button, so a changed plan voids it (``PlanChanged``) and the
two-person rule is the engine's (``ApprovalRefused``). An authentic request is answered
200 with ``{"response_type", "text", "outcome"}`` (what chat services expect: the text is
shown to the user) and, for buttons, in the incident's thread through ``response_url``.
Every authentic request is audited with its outcome.
"""

from __future__ import annotations

import logging
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, client_of, note_audit
from api.chatops.commands import (
    Action,
    ChatInputError,
    Command,
    parse_action,
    parse_command,
    user_id_of,
    who,
)
from api.chatops.signing import Refusal, check_signature, replay_key
from kernel import untrusted
from kernel.errors import (
    ApprovalRefused,
    IllegalTransition,
    MendloopError,
    PlanChanged,
    PlanHashRequired,
)
from kernel.state import State

log = logging.getLogger("mendloop.chat")

Outcome = Literal["ok", "refused", "plan_changed", "not_found", "conflict", "invalid"]


class Reply:
    """What we answer a person: the text, whether the channel sees it, how it went."""

    def __init__(self, text: str, outcome: Outcome = "ok", public: bool = False) -> None:
        self.text, self.outcome, self.public = text, outcome, public

    def body(self) -> dict[str, Any]:
        return {
            "response_type": "in_channel" if self.public else "ephemeral",
            "text": self.text,
            "outcome": self.outcome,
        }


def _form(raw: bytes) -> dict[str, str]:
    """The url-encoded form (first value of each field); ChatInputError when it is not."""
    try:
        text = raw.decode("utf-8")
        fields = parse_qs(text, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChatInputError(f"the body is not a url-encoded form ({type(exc).__name__})") from None
    return {k: v[0] for k, v in fields.items()}


_SIGNED = {
    "parameters": [
        {
            "name": "X-Slack-Request-Timestamp",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "unix seconds; within 5 minutes",
        },
        {
            "name": "X-Slack-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "v0=HMAC-SHA256(signing secret, 'v0:' + timestamp + ':' + raw body)",
        },
    ],
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": '{"response_type", "text", "outcome"}: shown to the chat user'},
    400: {"description": "the request cannot be read"},
    401: {"description": "signature missing, wrong, outside the 5-minute window or replayed"},
    503: {"description": "no signing secret configured (MENDLOOP_CHAT_SIGNING_SECRET)"},
}


def _form_schema(properties: dict[str, str]) -> dict[str, Any]:
    return {
        **_SIGNED,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            k: {"type": "string", "description": v} for k, v in properties.items()
                        },
                    }
                }
            },
        },
    }


_ACTIONS_DOC = _form_schema({"payload": "Slack block_actions JSON (mendloop_approve/_reject)"})
_COMMANDS_DOC = _form_schema(
    {
        "text": "status | incident ID | approve ID HASH | reject ID [reason] | "
        "pause [target] [reason] | resume [target] | help",
        "user_id": "the chat user's id (mapped by MENDLOOP_CHAT_USERS; the only thing mapped)",
        "user_name": "the chat user's name (never used to grant a role)",
        "response_url": "where the answer may be posted later",
    }
)


def chat_router(ops: Any) -> APIRouter:
    """The router over a ChatOps (config, store, engine, sender, audit, replay guard)."""
    router = APIRouter(prefix="/v1/chat", tags=["chat"])

    async def authentic(request: Request) -> bytes | JSONResponse:
        raw = await request.body()
        if not ops.config.incoming:
            ops.count("not_configured")
            note_audit(request, "chat callback refused: no signing secret configured")
            return JSONResponse({"detail": "chat callbacks are not configured"}, 503)
        headers = request.headers
        timestamp = headers.get("x-slack-request-timestamp")
        now = ops.clock()
        refusal = check_signature(
            ops.config.signing_secret, timestamp, headers.get("x-slack-signature"), raw, now
        )
        if refusal is None and not ops.replays.first_time(replay_key(timestamp or "", raw), now):
            refusal = Refusal("replayed", "replayed request (this request was already taken)")
        if refusal is not None:
            ops.count(refusal.reason)
            log.warning("chat callback refused from %r: %s", client_of(request), refusal.why)
            await ops.audit_refusal(request, refusal.why)
            return JSONResponse({"detail": f"request signature refused: {refusal.why}"}, 401)
        return raw

    async def unreadable(request: Request, what: str, exc: ChatInputError) -> JSONResponse:
        ops.count("malformed_request")
        log.warning("chat %s refused from %r: %s", what, client_of(request), exc)
        note_audit(request, f"chat {what} refused: {exc}")
        await ops.audit_chat(request, None, 400, f"chat {what} refused: {exc}")
        return JSONResponse({"detail": f"cannot read the {what}: {exc}"}, 400)

    @router.post("/actions", openapi_extra=_ACTIONS_DOC, responses=_ANSWERS)
    async def actions(request: Request) -> JSONResponse:
        raw = await authentic(request)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            payload = _json(_form(raw).get("payload", ""))
            if not isinstance(payload, dict):
                raise ChatInputError("payload is not a JSON object")
            action = parse_action(payload)
        except ChatInputError as exc:
            return await unreadable(request, "interaction", exc)
        principal = who(ops.config.users, action.user_id)
        request.state.principal = principal
        reply = await run_in_threadpool(ops.act, principal, action)
        detail = f"chat {action.verb} {action.incident_id} as {principal.name}: {reply.outcome}"
        note_audit(request, f"{detail}: {reply.text}")
        await ops.audit_chat(request, principal, 200, f"{detail}: {reply.text}")
        return JSONResponse(reply.body())

    @router.post("/commands", openapi_extra=_COMMANDS_DOC, responses=_ANSWERS)
    async def commands(request: Request) -> JSONResponse:
        raw = await authentic(request)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            form = _form(raw)
            user_id = user_id_of(form.get("user_id", ""))
        except ChatInputError as exc:
            return await unreadable(request, "command", exc)
        principal = who(ops.config.users, user_id)
        request.state.principal = principal
        text = form.get("text", "")[:500]
        try:
            command = parse_command(text)
        except ChatInputError as exc:
            ops.count("invalid_command")
            reply = Reply(str(exc), "invalid")
        else:
            reply = await run_in_threadpool(ops.run, principal, command)
        detail = f"chat command {text!r} as {principal.name}: {reply.outcome}"
        note_audit(request, detail)
        await ops.audit_chat(request, principal, 200, detail)
        return JSONResponse(reply.body())

    return router


def _json(text: str) -> Any:
    """JSON from a hostile form field: anything unreadable (bad syntax, absurd nesting) is
    a ChatInputError, never an exception that would make a 500."""
    try:
        return untrusted.loads(text)
    except ValueError as exc:
        raise ChatInputError(f"payload is not JSON ({type(exc).__name__})") from None


def not_allowed(principal: Principal, what: Action | Command) -> Reply | None:
    """A refusal when the chat user's role is below what the action needs."""
    if principal.role.allows(what.needs):
        return None
    return Reply(
        f"{principal.name} is {principal.role}; {what.verb} needs {what.needs} or above "
        "(ask an admin to map your chat user in MENDLOOP_CHAT_USERS)",
        "refused",
    )


def approval_error(exc: MendloopError, incident_id: str, state: State | None) -> Reply:
    """An engine refusal of an approval, in words for the person who clicked."""
    if isinstance(exc, PlanHashRequired):
        now = exc.current_hash or "-"
        return Reply(
            f"Incident {incident_id}: an approval must name the plan it approves. Look at it "
            f"(/mendloop incident {incident_id}) and approve that one: "
            f"/mendloop approve {incident_id} {now[:12]}",
            "refused",
        )
    if isinstance(exc, PlanChanged):
        now = f" (now {exc.current_hash[:12]})" if exc.current_hash else ""
        return Reply(
            f"The plan of incident {incident_id} changed since it was shown{now}: this "
            "approval is void. Look at the current plan (posted in the thread) and approve "
            "that one.",
            "plan_changed",
        )
    if isinstance(exc, ApprovalRefused):
        return Reply(f"Refused: {exc}", "refused")
    if isinstance(exc, IllegalTransition):
        where = f"is {state}" if state else "cannot move"
        return Reply(f"Incident {incident_id} {where}; nothing to approve or reject.", "conflict")
    return Reply(f"Incident {incident_id}: {exc}", "conflict")
