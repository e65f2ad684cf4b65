"""ChatOps assembled: the engine listener that posts stage messages, and what the chat
endpoints do as a chat user (approve, reject, status, incident, pause, resume).

    chat = ChatOps.from_settings(settings, engine.store, engine.operations)   # None: off
    engine.listeners.append(chat.notify)      # only queues: never blocks the loop
    app = create_app(..., chat=chat.router)
    chat.start(); ...; chat.stop()

What chat does to incidents goes through ``ChatActions`` (loop.operations.Operations, the
service the REST API calls too); the chat service side is a ChatTransport
(api/chatops/sender.py). Audit: with API auth on, the app's audit
middleware writes each chat call's entry (principal and detail set here); with it off
this writes them itself, since chat callbacks are authenticated by their signature
whatever the API's setting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

import api.chatops.blocks as blocks
from api.auth import AuditLog, Principal, client_of, note_audit
from api.chatops.commands import USAGE, Action, Command
from api.chatops.config import ChatConfig
from api.chatops.router import Reply, approval_error, chat_router, not_allowed
from api.chatops.sender import (
    ChatSender,
    ChatTransport,
    ThreadStore,
    WebApiTransport,
    WebhookTransport,
)
from api.chatops.signing import ReplayGuard, Replays
from api.metrics import ChatStatus
from kernel.approval import ApprovalPlan, AutomationStatus
from kernel.config import Settings
from kernel.errors import IllegalTransition, MendloopError, PlanChanged
from kernel.state import State
from loop.events import StageEvent
from loop.store import IncidentStore, IncidentView

log = logging.getLogger("mendloop.chat")


class ChatActions(Protocol):
    """What chat does to incidents and automation (loop.operations.Operations)."""

    def plan(self, incident_id: str) -> ApprovalPlan | None: ...

    def approve(
        self, incident_id: str, by: str = ..., comment: str = ..., plan_hash: str | None = ...
    ) -> IncidentView: ...

    def reject(self, incident_id: str, by: str = ..., comment: str = ...) -> IncidentView: ...

    def pause(self, target: str | None, by: str, reason: str = ...) -> AutomationStatus: ...

    def resume(self, target: str | None, by: str) -> AutomationStatus: ...

    def automation(self) -> AutomationStatus: ...


class ChatOps:
    def __init__(
        self,
        config: ChatConfig,
        store: IncidentStore,
        actions: ChatActions,
        transport: ChatTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.actions = actions
        self.clock = clock
        self.replays: Replays = ReplayGuard()  # several workers: the SQL one
        self.refusals: Counter[str] = Counter()  # refused callbacks and URLs, by reason
        self._count_lock = threading.Lock()
        self.audit = AuditLog(store.engine)
        transport = transport or _transport(config)
        self.sender: ChatSender | None = None
        if transport is not None:
            self.sender = ChatSender(
                transport,
                ThreadStore(store.engine) if transport.threaded else None,
                max_queue=config.queue_size,
                max_attempts=config.max_attempts,
                backoff_s=config.backoff_s,
            )
        self.router: APIRouter = chat_router(self)

    @classmethod
    def from_settings(
        cls, settings: Settings, store: IncidentStore, actions: ChatActions
    ) -> ChatOps | None:
        """ChatOps when any MENDLOOP_CHAT_* is configured, else None (ConfigError if bad)."""
        config = ChatConfig.from_settings(settings)
        if not (config.outgoing or config.incoming):
            return None
        return cls(config, store, actions)

    def start(self) -> None:
        if self.sender is not None:
            self.sender.start()

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop()

    def status(self) -> ChatStatus:
        """For /metrics: refusals by reason, the sender's messages by outcome."""
        with self._count_lock:
            refusals = dict(self.refusals)
        messages = dict(self.sender.counts) if self.sender is not None else {}
        return ChatStatus(refusals=refusals, messages=messages)

    def count(self, reason: str) -> None:
        """One more refusal under ``reason`` (missing_headers, malformed_signature,
        bad_signature, stale_timestamp, replayed, malformed_request, invalid_command,
        response_url_refused, ...)."""
        with self._count_lock:
            self.refusals[reason] += 1

    # -- outgoing: the engine listener (called on the event loop: only queue) -----------

    def notify(self, event: StageEvent) -> None:
        """``engine.listeners.append(chat.notify)``: one message per stage that matters."""
        if self.sender is None:
            return
        if event.kind == "automation":
            self.sender.post(None, blocks.automation_message(event.note))
            return
        if event.state is None or event.state not in blocks.POSTED:
            return
        incident_id, state, note = event.incident_id, event.state, event.note

        def build() -> blocks.ChatMessage | None:  # runs on the sender thread
            incident = self.store.get(incident_id)
            if incident is None:
                return None
            plan = incident.plan
            if plan is None and state == State.awaiting_approval:
                plan = self.actions.plan(incident_id)
            return blocks.stage_message(state, note, incident, plan)

        self.sender.post(incident_id, build)

    # -- incoming: what a chat user asks (runs in a worker thread) ----------------------

    def act(self, principal: Principal, action: Action) -> Reply:
        """A button press: approve or reject the plan bound in the button."""
        reply = self._act(principal, action)
        if action.response_url and (why := self.config.response_refusal(action.response_url)):
            self.count("response_url_refused")
            log.warning(
                "chat response_url refused, not posted to (%s): %.200r", why, action.response_url
            )
        elif action.response_url and self.sender is not None:
            if reply.outcome == "ok":
                incident = self.store.get(action.incident_id)
                message = (
                    blocks.decided_request(incident, reply.text)
                    if incident is not None
                    else blocks.answer(reply.text)
                )
                self.sender.respond(action.response_url, message, action.incident_id, replace=True)
            else:
                self.sender.respond(
                    action.response_url,
                    blocks.answer(reply.text),
                    action.incident_id,
                    ephemeral=True,
                )
        return reply

    def _act(self, principal: Principal, action: Action) -> Reply:
        if (refusal := not_allowed(principal, action)) is not None:
            return refusal
        if action.verb == "approve":
            return self._approve(principal, action.incident_id, action.plan_hash)
        return self._reject(principal, action.incident_id, "rejected in chat")

    def run(self, principal: Principal, command: Command) -> Reply:
        """A slash command."""
        if (refusal := not_allowed(principal, command)) is not None:
            return refusal
        if command.verb == "help":
            return Reply(USAGE)
        if command.verb == "status":
            return Reply(blocks.status_text(self.store.unfinished(), self.actions.automation()))
        if command.verb in ("pause", "resume"):
            try:
                if command.verb == "pause":
                    status = self.actions.pause(command.target, principal.name, command.comment)
                else:
                    status = self.actions.resume(command.target, principal.name)
            except MendloopError as exc:
                return Reply(f"{command.verb} refused: {exc}", "conflict")
            where = f"on {command.target}" if command.target else "everywhere"
            lines = blocks.status_text([], status).splitlines()[1:]
            return Reply(
                f"automation {command.verb}d {where} by {principal.name}\n" + "\n".join(lines),
                public=True,
            )
        assert command.incident_id is not None
        incident = self.store.get(command.incident_id)
        if incident is None:
            return Reply(f"no incident {command.incident_id}", "not_found")
        if command.verb == "incident":
            return Reply(blocks.incident_text(incident, incident.plan))
        if command.verb == "approve":
            plan_hash = command.plan_hash
            current = incident.plan.plan_hash if incident.plan else None
            if current and plan_hash is not None and current.startswith(plan_hash):
                plan_hash = current  # the prefix a person typed names the current plan
            return self._approve(principal, incident.id, plan_hash)
        return self._reject(principal, incident.id, command.comment or "rejected in chat")

    def _approve(self, principal: Principal, incident_id: str, plan_hash: str | None) -> Reply:
        incident = self.store.get(incident_id)
        if incident is None:
            return Reply(f"no incident {incident_id}", "not_found")
        try:
            view = self.actions.approve(
                incident_id, by=principal.name, comment="approved in chat", plan_hash=plan_hash
            )
        except MendloopError as exc:  # PlanHashRequired, PlanChanged, two-person rule, state
            now = self.store.get(incident_id)
            if isinstance(exc, PlanChanged) and now is not None and self.sender is not None:
                self.sender.post(
                    incident_id,
                    blocks.stage_message(
                        State.awaiting_approval,
                        f"the plan changed; an approval of the earlier one was void: {exc}",
                        now,
                        now.plan,
                    )
                    or blocks.answer(str(exc)),
                )
            return approval_error(exc, incident_id, now.state if now else None)
        bound = view.approval.plan_hash[:12] if view.approval and view.approval.plan_hash else "-"
        return Reply(
            f"Incident {incident_id} approved by {principal.name} (plan {bound}); it runs now.",
            public=True,
        )

    def _reject(self, principal: Principal, incident_id: str, comment: str) -> Reply:
        incident = self.store.get(incident_id)
        if incident is None:
            return Reply(f"no incident {incident_id}", "not_found")
        try:
            self.actions.reject(incident_id, by=principal.name, comment=comment)
        except IllegalTransition as exc:
            return approval_error(exc, incident_id, incident.state)
        return Reply(f"Incident {incident_id} rejected by {principal.name}: {comment}", public=True)

    # -- audit ---------------------------------------------------------------------------

    async def audit_refusal(self, request: Request, why: str) -> None:
        """A callback refused before we know who sent it (bad or stale signature)."""
        note_audit(request, f"chat callback refused: {why}")
        await self.audit_chat(request, None, 401, f"chat callback refused: {why}")

    async def audit_chat(
        self, request: Request, principal: Principal | None, status: int, detail: str
    ) -> None:
        """With API auth on, the audit middleware writes the entry; off, we do."""
        if getattr(request.app.state, "auth", None) is not None:
            return
        await run_in_threadpool(
            self.audit.record,
            principal,
            request.method,
            request.url.path,
            status,
            client_of(request),
            detail,
        )


def _transport(config: ChatConfig) -> ChatTransport | None:
    if config.api_url:
        return WebApiTransport(config.api_url, config.bot_token, config.channel, config.timeout_s)
    if config.webhook_url:
        return WebhookTransport(config.webhook_url, config.timeout_s)
    return None
