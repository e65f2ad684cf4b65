"""ChatOps adapters against a local HTTP receiver standing in for the chat service (the one
thing we fake): the background sender (threads kept in SQL across a restart, retries,
backoff, a bounded queue), and the signed endpoints acting on the engine's real approval
code (loop/operations.py on a real SQLite store): correctly and incorrectly signed
callbacks, replays, unknown users, roles, a changed plan, the two-person rule, commands
and the audit. The end-to-end test with the real Engine on the twin is at the bottom."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import AuditLog, Auth
from api.chatops import ChatConfig, ChatOps
from api.chatops.blocks import ChatMessage, answer
from api.chatops.commands import APPROVE_ACTION, REJECT_ACTION, parse_users
from api.chatops.sender import ChatSender, ThreadStore, WebApiTransport, WebhookTransport
from api.chatops.signing import sign
from kernel.approval import ApprovalPlan
from kernel.config import DEFAULT_SITE
from kernel.models import Decision, DecisionMode, RCAReport, RootCause, RunStatus
from kernel.state import State
from loop.events import Events, StageEvent
from loop.ledger import Ledger
from loop.operations import Operations
from loop.planner import Planner
from loop.solutions import load_library
from loop.store import IncidentStore
from sites import Site, load_site

SECRET = "test-signing-secret"
NOW = 1_800_000_000
USERS = "U100=alice:approver,U200=bob:operator,U300=vic:viewer,U400=carol:approver"


# -- the chat service: a real HTTP server on 127.0.0.1 ------------------------------------


class ChatReceiver:
    """Records every post; answers ``/api/chat.postMessage`` like Slack (ok, channel, ts),
    anything else like a webhook or response_url (``ok``). ``fail`` holds statuses to answer
    first (one per request), to exercise retries."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail: list[int] = []
        self.api_error: str | None = None
        self._ts = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver._take(self, raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        with self._changed:
            status = self.fail.pop(0) if self.fail else 200
            body = json.loads(raw) if raw else {}
            record = {"path": handler.path, "body": body, "status": status}
            record["auth"] = handler.headers.get("authorization")
            answer: dict[str, Any] | str = "ok"
            if status == 200 and handler.path == "/api/chat.postMessage":
                if self.api_error:
                    answer = {"ok": False, "error": self.api_error}
                else:
                    self._ts += 1
                    answer = {"ok": True, "channel": body["channel"], "ts": f"{NOW}.{self._ts:06d}"}
                    record["ts"] = answer["ts"]
            self.posts.append(record)
            self._changed.notify_all()
        data = json.dumps(answer).encode() if isinstance(answer, dict) else answer.encode()
        handler.send_response(status)
        if status == 429:
            handler.send_header("Retry-After", "0")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def delivered(self, path: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["status"] == 200 and path in (None, p["path"])]

    def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 120):
        """Until ``check(posts)`` holds (a deadline only against hanging; never a measure)."""
        with self._changed:
            assert self._changed.wait_for(lambda: check(self.posts), timeout_s), self.posts
            return list(self.posts)

    def __enter__(self) -> ChatReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[ChatReceiver]:
    with ChatReceiver() as receiver:
        yield receiver


@pytest.fixture
def store(tmp_path) -> Iterator[IncidentStore]:
    store = IncidentStore(f"sqlite:///{tmp_path / 'chat.db'}")
    yield store
    store.close()


def _sender(receiver: ChatReceiver, store: IncidentStore, **kw: Any) -> ChatSender:
    transport = WebApiTransport(receiver.url + "/api", "xoxb-test", "C42", timeout_s=5)
    return ChatSender(transport, ThreadStore(store.engine), backoff_s=0.01, **kw)


# -- the sender -------------------------------------------------------------------------------


def test_messages_of_an_incident_are_threaded_and_the_thread_survives_a_restart(
    receiver, store
) -> None:
    sender = _sender(receiver, store)
    sender.start()
    sender.post("inc1", answer("first"))
    sender.post("inc2", answer("other incident"))
    sender.post("inc1", answer("second"))
    sender.flush()
    sender.stop()
    first, other, second = receiver.delivered("/api/chat.postMessage")
    assert first["auth"] == "Bearer xoxb-test" and first["body"]["channel"] == "C42"
    assert "thread_ts" not in first["body"] and "thread_ts" not in other["body"]
    assert second["body"]["thread_ts"] == first["ts"]
    assert second["body"]["blocks"][0]["text"]["text"] == "second"
    # a restarted daemon (new sender, same database) keeps posting into the same thread
    again = _sender(receiver, store)
    again.start()
    again.post("inc1", answer("after restart"))
    again.flush()
    again.stop()
    assert receiver.delivered()[-1]["body"]["thread_ts"] == first["ts"]
    assert ThreadStore(store.engine).get("inc1") == ("C42", first["ts"])


def test_a_webhook_cannot_thread_so_each_message_names_its_incident(receiver) -> None:
    sender = ChatSender(WebhookTransport(receiver.url + "/hooks/abc"), None, backoff_s=0.01)
    sender.start()
    sender.post("inc9", ChatMessage("Incident inc9 on site: resolved", ()))
    sender.post("inc9", ChatMessage("Incident inc9 on site: again", ()))
    sender.flush()
    sender.stop()
    posts = receiver.delivered("/hooks/abc")
    assert [p["body"] for p in posts] == [
        {"text": "Incident inc9 on site: resolved"},
        {"text": "Incident inc9 on site: again"},
    ]


def test_temporary_failures_are_retried_with_backoff(receiver, store) -> None:
    receiver.fail = [503, 429, 502]
    sender = _sender(receiver, store)
    sender.start()
    sender.post("inc1", answer("eventually"))
    sender.flush()
    sender.stop()
    assert [p["status"] for p in receiver.posts] == [503, 429, 502, 200]
    assert sender.counts == {"sent": 1, "failed": 0, "dropped": 0, "retried": 3}


def test_permanent_failures_and_giving_up_are_logged_not_raised(receiver, store, caplog) -> None:
    receiver.fail = [400]
    sender = _sender(receiver, store, max_attempts=3)
    sender.start()
    sender.post("inc1", answer("refused once"))  # 400: no retry
    sender.flush()
    receiver.fail = [500, 500, 500]
    sender.post("inc2", answer("down"))  # 5xx three times: given up
    sender.flush()
    receiver.api_error = "channel_not_found"
    sender.post("inc3", answer("bad channel"))  # Slack's ok=false: not retried
    sender.flush()
    sender.stop()
    assert sender.counts["failed"] == 3 and sender.counts["sent"] == 0
    assert sender.counts["retried"] == 2
    assert "not delivered" in caplog.text and "channel_not_found" in caplog.text


def test_an_unreachable_chat_service_never_reaches_the_caller(store) -> None:
    transport = WebApiTransport("http://127.0.0.1:9/api", "t", "C1", timeout_s=1)
    sender = ChatSender(transport, ThreadStore(store.engine), max_attempts=2, backoff_s=0.01)
    sender.start()
    assert sender.post("inc1", answer("nobody listens"))
    sender.flush()
    sender.stop()
    assert sender.counts["failed"] == 1 and sender.counts["retried"] == 1


def test_the_queue_is_bounded_and_a_full_queue_drops(store, receiver) -> None:
    sender = _sender(receiver, store, max_queue=2)  # not started: nothing drains it
    assert sender.post("a", answer("1")) and sender.post("b", answer("2"))
    assert not sender.post("c", answer("3"))
    assert sender.counts["dropped"] == 1
    sender.start()
    sender.flush()
    sender.stop()
    assert len(receiver.delivered()) == 2


def test_a_message_that_fails_to_build_does_not_stop_the_sender(receiver, store) -> None:
    sender = _sender(receiver, store)
    sender.start()

    def broken() -> ChatMessage:
        raise RuntimeError("bug while rendering")

    sender.post("inc1", broken)
    sender.post("inc1", answer("still here"))
    sender.flush()
    sender.stop()
    assert len(receiver.delivered()) == 1 and sender.counts["failed"] == 1


# -- the endpoints, on the engine's real approval code ----------------------------------------


@functools.cache
def _site() -> Site:
    """The bundled twin site (its library and parameter defaults)."""
    return load_site(DEFAULT_SITE)


@functools.cache
def _library() -> dict:
    return load_library()  # the power-marketing pack's


def approval_desk(store: IncidentStore) -> Operations:
    """The engine's people-facing service (loop/operations.py: approve with the plan hash,
    the two-person rule, reject, pause/resume) on a real SQLite store, built with what
    those need; re-analysing and proposing need Neo4j and the twin (the end-to-end test
    below has them), so there is no analyzer or decider here."""
    planner = Planner(_site(), verify_hold_s=5.0, verify_timeout_s=600.0)
    return Operations(
        store,
        Ledger(store.engine),
        analyzer=None,  # type: ignore[arg-type]  # reanalyze is not called on this desk
        decider=None,  # type: ignore[arg-type]  # nor propose
        planner=planner,
        events=Events(),
        walk=lambda incident_id: None,  # no loop here: an approved fix is not run
    )


def _plan(incident_id: str, requested_by: str = "mendloop", nodes: int = 2) -> ApprovalPlan:
    return ApprovalPlan.build(
        incident_id=incident_id,
        solution_id="sol-voltage-dvr",
        title="Switch in the dynamic voltage restorer",
        risk="high",
        target="pm-site-1",
        playbook="voltage_dvr.yml",
        extra_vars={"target": "pm-site-1", "nodes": nodes},
        hosts=("localhost",),
        check_mode=True,
        check_status=RunStatus.successful,
        changed=1,
        diff=("-dvr: off\n+dvr: on",),
        rollback_playbook="voltage_dvr_rollback.yml",
        requested_by=requested_by,
    )


def waiting(store: IncidentStore, requested_by: str = "mendloop") -> tuple[str, ApprovalPlan]:
    """An incident waiting for approval of a high-risk plan, as the engine leaves it."""
    incident_id = store.open_incident("pm-site-1", [])
    cause = RootCause(fault="voltage_sag", component="power", score=0.9, summary="sag", evidence=())
    report = RCAReport(
        incident_id=incident_id, target="pm-site-1", candidates=(cause,), latency_ms=1
    )
    decision = Decision(
        incident_id=incident_id,
        solution_id="sol-voltage-dvr",
        mode=DecisionMode.approval,
        reason="high risk",
        requested_by=requested_by,
    )
    plan = _plan(incident_id, requested_by)
    store.transition(incident_id, State.analyzed, "rca", report=report, fault="voltage_sag")
    store.transition(incident_id, State.decided, "decided", decision=decision)
    store.transition(incident_id, State.awaiting_approval, "needs approval", plan=plan)
    return incident_id, plan


class Chat:
    """The app with ChatOps (Web API transport to the receiver) over a real store."""

    def __init__(self, store: IncidentStore, receiver: ChatReceiver, auth: bool = False) -> None:
        self.store = store
        self.desk = approval_desk(store)
        config = ChatConfig(
            api_url=receiver.url + "/api",
            bot_token="xoxb-test",
            channel="C42",
            signing_secret=SECRET,
            users=parse_users(USERS),
            backoff_s=0.01,
        )
        self.ops = ChatOps(config, store, self.desk, clock=lambda: NOW)
        self.desk.events.listeners.append(self.ops.notify)
        self.ops.start()
        app = create_app(
            store,
            auth=Auth.on(store.engine) if auth else None,
            chat=self.ops.router,
            chat_status=self.ops.status,
        )
        self.client = TestClient(app)
        self.response_url = receiver.url + "/respond/T1/1"

    def signed(self, path: str, form: dict[str, str], ts: int = NOW, secret: str = SECRET):
        body = urlencode(form).encode()
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": str(ts),
            "x-slack-signature": sign(secret, str(ts), body),
        }
        return self.client.post(path, content=body, headers=headers)

    def press(self, verb: str, incident_id: str, plan_hash: str, user: str = "U100", **kw):
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": f"{user.lower()}.name"},
            "channel": {"id": "C42"},
            "response_url": self.response_url,
            "actions": [
                {
                    "action_id": APPROVE_ACTION if verb == "approve" else REJECT_ACTION,
                    "value": f"{incident_id}:{plan_hash}",
                }
            ],
        }
        return self.signed("/v1/chat/actions", {"payload": json.dumps(payload)}, **kw)

    def command(self, text: str, user: str = "U100", user_name: str = "someone", **kw):
        form = {"command": "/mendloop", "text": text, "user_id": user, "user_name": user_name}
        return self.signed("/v1/chat/commands", form | {"response_url": self.response_url}, **kw)

    def settle(self) -> None:
        assert self.ops.sender is not None
        self.ops.sender.flush()

    def close(self) -> None:
        self.client.close()
        self.ops.stop()


@pytest.fixture
def chat(store, receiver) -> Iterator[Chat]:
    chat = Chat(store, receiver)
    yield chat
    chat.close()


def _audit(store: IncidentStore) -> list:
    return AuditLog(store.engine).entries()


def test_a_signed_approval_binds_the_plan_hash_and_answers_in_the_thread(
    chat, store, receiver
) -> None:
    incident_id, plan = waiting(store)
    chat.ops.notify(  # the engine announced the request: buttons in a new thread
        StageEvent(incident_id, "pm-site-1", State.awaiting_approval, "needs", datetime.now(UTC))
    )
    chat.settle()
    request = receiver.delivered("/api/chat.postMessage")[-1]
    buttons = next(b for b in request["body"]["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[0]["value"] == f"{incident_id}:{plan.plan_hash}"

    answer = chat.press("approve", incident_id, plan.plan_hash)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "ok" and "approved by alice" in answer.json()["text"]
    incident = store.get(incident_id)
    assert incident.state == State.approved
    assert incident.approval.by == "alice" and incident.approval.plan_hash == plan.plan_hash
    chat.settle()
    replaced = [p for p in receiver.delivered() if p["path"].startswith("/respond/")]
    assert replaced[-1]["body"]["replace_original"] is True  # the buttons are gone
    assert not [b for b in replaced[-1]["body"]["blocks"] if b["type"] == "actions"]
    note = receiver.delivered("/api/chat.postMessage")[-1]["body"]
    assert note["thread_ts"] == request["ts"] and "approved by alice" in note["text"]
    entry = _audit(store)[0]
    assert (entry.actor, entry.role, entry.via, entry.status) == ("alice", "approver", "chat", 200)
    assert entry.path == "/v1/chat/actions" and f"approve {incident_id}" in entry.detail


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ({"secret": "not-the-secret"}, "bad signature"),
        ({"ts": NOW - 301}, "stale timestamp"),
        ({"ts": NOW + 301}, "stale timestamp"),
        ({"ts": NOW - 3600}, "stale timestamp"),  # a captured request replayed an hour later
    ],
)
def test_badly_signed_or_stale_callbacks_are_refused_and_audited(chat, store, how, why) -> None:
    incident_id, plan = waiting(store)
    answer = chat.press("approve", incident_id, plan.plan_hash, **how)
    assert answer.status_code == 401 and why in answer.json()["detail"]
    assert store.get(incident_id).state == State.awaiting_approval
    entry = _audit(store)[0]
    assert (entry.actor, entry.status) == ("unauthenticated", 401) and why in entry.detail


def test_unsigned_and_tampered_requests_are_refused(chat, store) -> None:
    incident_id, _ = waiting(store)
    bare = chat.client.post("/v1/chat/commands", data={"text": "status", "user_id": "U100"})
    assert bare.status_code == 401 and "missing" in bare.json()["detail"]
    body = urlencode({"text": "reject " + incident_id, "user_id": "U100"}).encode()
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": str(NOW),
        "x-slack-signature": sign(SECRET, str(NOW), body.replace(b"reject", b"status")),
    }
    tampered = chat.client.post("/v1/chat/commands", content=body, headers=headers)
    assert tampered.status_code == 401
    assert store.get(incident_id).state == State.awaiting_approval


def test_a_replayed_callback_within_the_window_is_refused(chat, store) -> None:
    incident_id, _ = waiting(store)
    first = chat.command(f"reject {incident_id} no")
    assert first.status_code == 200
    again = chat.command(f"reject {incident_id} no")  # identical request, same signature
    assert again.status_code == 401 and "replayed" in again.json()["detail"]


@pytest.mark.parametrize(("user", "name"), [("U999", "chat:U999"), ("U300", "vic")])
def test_unknown_users_and_viewers_cannot_approve(chat, store, receiver, user, name) -> None:
    incident_id, plan = waiting(store)
    answer = chat.press("approve", incident_id, plan.plan_hash, user=user)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "refused"
    assert f"{name} is viewer; approve needs approver" in answer.json()["text"]
    assert store.get(incident_id).state == State.awaiting_approval
    chat.settle()
    told = receiver.delivered()[-1]["body"]
    assert told["response_type"] == "ephemeral" and "needs approver" in told["text"]
    entry = _audit(store)[0]
    assert (entry.actor, entry.via) == (name, "chat") and "refused" in entry.detail


def test_an_approval_of_a_changed_plan_is_void_and_the_new_plan_is_posted(
    chat, store, receiver
) -> None:
    incident_id, old = waiting(store)
    newer = _plan(incident_id, nodes=3)  # the plan changed after the message went out
    store.transition(incident_id, State.decided, "re-decided")
    store.transition(incident_id, State.awaiting_approval, "needs approval", plan=newer)
    answer = chat.press("approve", incident_id, old.plan_hash)
    assert answer.json()["outcome"] == "plan_changed"
    assert (
        "approval is void" in answer.json()["text"]
        and newer.plan_hash[:12] in (answer.json()["text"])
    )
    assert store.get(incident_id).state == State.awaiting_approval
    chat.settle()
    posted = receiver.delivered("/api/chat.postMessage")[-1]["body"]
    buttons = next(b for b in posted["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[0]["value"] == f"{incident_id}:{newer.plan_hash}"
    assert "plan changed" in posted["text"]
    # the new plan's button works
    assert chat.press("approve", incident_id, newer.plan_hash).json()["outcome"] == "ok"


def test_nobody_approves_their_own_high_risk_request(chat, store) -> None:
    incident_id, plan = waiting(store, requested_by="alice")
    mine = chat.press("approve", incident_id, plan.plan_hash, user="U100")
    assert mine.json()["outcome"] == "refused" and "two-person rule" in mine.json()["text"]
    assert store.get(incident_id).state == State.awaiting_approval
    other = chat.command(f"approve {incident_id} {plan.plan_hash[:12]}", user="U400")
    assert other.json()["outcome"] == "ok", other.json()
    assert store.get(incident_id).approval.by == "carol"


def test_reject_button_ends_the_incident(chat, store) -> None:
    incident_id, plan = waiting(store)
    answer = chat.press("reject", incident_id, plan.plan_hash)
    assert answer.json()["outcome"] == "ok"
    incident = store.get(incident_id)
    assert incident.state == State.rejected and "rejected by alice" in incident.reason
    again = chat.press("approve", incident_id, plan.plan_hash, ts=NOW - 1)
    assert again.json()["outcome"] == "conflict" and "is rejected" in again.json()["text"]


def test_commands_status_incident_pause_resume(chat, store, receiver) -> None:
    incident_id, plan = waiting(store)
    status = chat.command("status", user="U300")
    assert status.status_code == 200
    assert f"waiting for approval: {incident_id}" in status.json()["text"]
    assert status.json()["response_type"] == "ephemeral"
    detail = chat.command(f"incident {incident_id}", user="U999").json()
    assert plan.plan_hash in detail["text"] and "voltage_dvr.yml" in detail["text"]
    assert chat.command("incident nope").json()["outcome"] == "not_found"
    refused = chat.command("pause", user="U300").json()
    assert refused["outcome"] == "refused" and "pause needs operator" in refused["text"]
    paused = chat.command("pause pm-site-1 db upgrade", user="U200").json()
    assert paused["outcome"] == "ok" and paused["response_type"] == "in_channel"
    assert chat.desk.automation().pause_for("pm-site-1") is not None
    assert "paused on pm-site-1 by bob: db upgrade" in paused["text"]
    assert chat.command("resume pm-site-1", user="U200").json()["outcome"] == "ok"
    assert chat.desk.automation().pause_for("pm-site-1") is None
    assert chat.command("pause all storm", user="U200").json()["outcome"] == "ok"
    assert chat.desk.automation().paused
    chat.settle()
    notes = [p["body"]["text"] for p in receiver.delivered("/api/chat.postMessage")]
    assert "mendloop: automation paused everywhere by bob: storm" in notes
    bad = chat.command("reboot the world").json()
    assert bad["outcome"] == "invalid" and "usage:" in bad["text"]
    assert "usage:" in chat.command("help").json()["text"]
    wrong_hash = chat.command(f"approve {incident_id} deadbeefdeadbeef").json()
    assert wrong_hash["outcome"] == "plan_changed"
    assert chat.command(f"reject {incident_id} not now").json()["outcome"] == "ok"
    assert store.get(incident_id).reason == "rejected by alice: not now"


def test_with_api_auth_on_the_middleware_audits_chat_calls(store, receiver) -> None:
    chat = Chat(store, receiver, auth=True)
    try:
        incident_id, plan = waiting(store)
        assert chat.press("approve", incident_id, plan.plan_hash, secret="x").status_code == 401
        assert chat.press("approve", incident_id, plan.plan_hash).json()["outcome"] == "ok"
    finally:
        chat.close()
    ok, refused = _audit(store)[:2]
    assert (ok.actor, ok.via, ok.status) == ("alice", "chat", 200) and "approve" in ok.detail
    assert (refused.actor, refused.status) == ("unauthenticated", 401)
    assert "bad signature" in refused.detail
    assert len(_audit(store)) == 2  # one entry per call, not two


def test_the_listener_posts_only_stages_that_matter_and_never_raises(store, receiver) -> None:
    config = ChatConfig(api_url=receiver.url + "/api", bot_token="t", channel="C42", queue_size=1)
    ops = ChatOps(config, store, approval_desk(store))
    incident_id, _ = waiting(store)

    def event(state: State) -> StageEvent:
        return StageEvent(incident_id, "pm-site-1", state, "note", datetime.now(UTC))

    ops.notify(event(State.open))  # not a stage we post: nothing queued
    ops.notify(event(State.decided))
    ops.notify(event(State.awaiting_approval))  # queued
    ops.notify(event(State.resolved))  # the queue (1) is full: dropped, not raised
    assert ops.sender is not None and ops.sender.counts["dropped"] == 1
    ops.start()
    ops.sender.flush()
    ops.stop()
    (posted,) = receiver.delivered()
    assert "Approval needed" in posted["body"]["blocks"][0]["text"]["text"]
    quiet = ChatOps(ChatConfig(signing_secret="s"), store, approval_desk(store))
    quiet.notify(event(State.resolved))  # incoming only: nothing to send, nothing raised
    assert quiet.sender is None


def test_callbacks_without_a_signing_secret_are_refused(store) -> None:
    ops = ChatOps(ChatConfig(), store, approval_desk(store))
    with TestClient(create_app(store, chat=ops.router)) as client:
        answer = client.post("/v1/chat/commands", data={"text": "status"})
        assert answer.status_code == 503


def test_openapi_documents_the_signed_chat_endpoints(chat) -> None:
    paths = chat.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/chat/actions", "/v1/chat/commands"):
        operation = paths[path]["post"]
        headers = {p["name"] for p in operation["parameters"]}
        assert headers == {"X-Slack-Request-Timestamp", "X-Slack-Signature"}
        assert {"200", "401"} <= set(operation["responses"])
        assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]


def test_a_malformed_interaction_is_a_400(chat) -> None:
    answer = chat.signed("/v1/chat/actions", {"payload": "{not json"})
    assert answer.status_code == 400
    answer = chat.signed("/v1/chat/actions", {"payload": json.dumps({"type": "shortcut"})})
    assert answer.status_code == 400 and "unsupported" in answer.json()["detail"]


def test_receiver_records_posts(receiver) -> None:
    httpx.post(receiver.url + "/hooks/x", json={"text": "hi"})
    assert receiver.delivered("/hooks/x")[0]["body"] == {"text": "hi"}


# -- end to end: the real Engine on the twin, approved from chat ------------------------------


class ChatLoop:
    """The twin, the real engine (durable_rules, Neo4j, ansible-runner, SQLite) with ChatOps
    posting to the receiver, and the API serving the chat endpoints, in a background
    event loop (as tests/e2e/conftest.py's LoopHarness, plus chat)."""

    def __init__(self, settings: Any, targets: tuple[str, ...]) -> None:
        import asyncio

        from twin.model import Twin
        from twin.server import TwinRunner

        self.settings = settings
        self.twin = TwinRunner(Twin(targets=targets, seed=7), tick_s=0.5, port=0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.api_url = ""

    def call(self, coro: Any, timeout: float = 180) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        import asyncio

        import uvicorn

        from mendloop.service import build_engine

        self.engine = build_engine(self.settings, {"twin_url": self.twin.url}, lambda _: None)
        self.chat = ChatOps.from_settings(
            self.settings, self.engine.store, self.engine.operations
        )
        assert self.chat is not None
        self.engine.listeners.append(self.chat.notify)
        self.chat.start()
        self.twin.sink = self.engine.submit
        await self.engine.start()
        app = create_app(
            self.engine.store, approvals=self.engine.operations, chat=self.chat.router
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._serve = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.05)
        self.api_url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    async def _stop(self) -> None:
        self.server.should_exit = True
        await self._serve
        await self.engine.stop()
        self.chat.stop()
        self.engine.close()

    def __enter__(self) -> ChatLoop:
        self.thread.start()
        self.twin.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self.twin.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def wait(self, check: Callable[[], Any], what: str, timeout_s: float = 240) -> Any:
        """Poll until ``check()`` is truthy (the deadline only stops a hang)."""
        import time

        deadline = time.monotonic() + timeout_s
        while not (found := check()):
            assert time.monotonic() < deadline, f"still waiting for {what}"
            time.sleep(0.2)
        return found


def _signed_post(url: str, form: dict[str, str]) -> httpx.Response:
    import time

    body = urlencode(form).encode()
    ts = str(int(time.time()))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": sign(SECRET, ts, body),
    }
    return httpx.post(url, content=body, headers=headers, timeout=30)


@pytest.mark.e2e
@pytest.mark.neo4j
def test_e2e_a_fix_approved_by_a_signed_chat_callback_runs_and_resolves(
    make_settings, graph, receiver
) -> None:
    """voltage_sag's fix is high risk, so the engine asks for approval: the request reaches
    the chat thread with its plan, alice (approver) presses Approve through a signed
    callback, the playbook really runs against the twin, verification passes, and every
    stage lands in the incident's thread."""
    settings = make_settings(
        verify_hold_s=3.0,
        verify_timeout_s=60.0,
        chat_api_url=receiver.url + "/api",
        chat_bot_token="xoxb-e2e",
        chat_channel="C42",
        chat_signing_secret=SECRET,
        chat_users="U100=alice:approver",
        chat_backoff_s=0.05,
    )
    target = "chat-1"
    with ChatLoop(settings, (target,)) as loop:
        store = loop.engine.store
        loop.wait(lambda: loop.engine.monitor.latest(target, "pq_voltage_rms_pct"), "samples")
        with loop.twin.locked() as model:
            model.inject(target, "voltage_sag")
        incident_id = loop.wait(lambda: [i.id for i in store.list(target=target)], "incident")[0]
        waiting = loop.wait(
            lambda: (i := store.get(incident_id)).state == State.awaiting_approval and i,
            "awaiting_approval",
        )
        assert waiting.plan is not None and waiting.plan.risk == "high"

        def approval_message(posts: list[dict[str, Any]]) -> bool:
            return any(
                b["type"] == "actions" and incident_id in b["elements"][0]["value"]
                for p in posts
                for b in p["body"].get("blocks", [])
            )

        posts = receiver.wait_for(approval_message)
        request = next(p for p in posts if approval_message([p]))
        button = next(b for b in request["body"]["blocks"] if b["type"] == "actions")
        value = button["elements"][0]["value"]
        assert value == f"{incident_id}:{waiting.plan.plan_hash}"
        for shown in ("voltage_dvr.yml", "localhost", waiting.plan.plan_hash):
            assert shown in json.dumps(request["body"])

        payload = {
            "type": "block_actions",
            "user": {"id": "U100", "username": "alice"},
            "channel": {"id": "C42"},
            "response_url": receiver.url + "/respond/e2e",
            "message": {"ts": request["ts"]},
            "actions": [{"action_id": APPROVE_ACTION, "value": value}],
        }
        answer = _signed_post(loop.api_url + "/v1/chat/actions", {"payload": json.dumps(payload)})
        assert answer.status_code == 200 and answer.json()["outcome"] == "ok", answer.text

        ended = loop.wait(lambda: (i := store.get(incident_id)).terminal and i, "the end")
        assert ended.state == State.resolved, ended.reason
        assert ended.approval is not None and ended.approval.by == "alice"
        assert ended.approval.plan_hash == waiting.plan.plan_hash
        runs = loop.engine.ledger.runs(incident_id)
        real = [r for r in runs if r.phase == "run"]
        assert len(real) == 1 and real[0].status == "successful" and real[0].changed > 0

        def thread_done(posts: list[dict[str, Any]]) -> bool:
            return any("Resolved" in p["body"].get("text", "") for p in posts)

        posts = receiver.wait_for(thread_done)
    messages = [
        p
        for p in posts
        if p["path"] == "/api/chat.postMessage" and incident_id in p["body"]["text"]
    ]
    first, rest = messages[0], messages[1:]
    assert "thread_ts" not in first["body"] and first["body"]["text"].startswith("New incident")
    assert rest and all(p["body"]["thread_ts"] == first["ts"] for p in rest)
    said = "\n".join(p["body"]["text"] for p in messages)
    for stage in ("needs an approval", "approved by alice", "ran", "Resolved"):
        assert stage in said, stage
    replaced = [p for p in posts if p["path"] == "/respond/e2e"]
    assert replaced and replaced[0]["body"]["replace_original"] is True
