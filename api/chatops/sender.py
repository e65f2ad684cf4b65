"""Delivery to the chat service: transports, the thread map in SQL, a background sender.

    transport = WebApiTransport("https://slack.com/api", bot_token, "C0123")   # threads
    transport = WebhookTransport("https://hooks.slack.com/services/...")        # no threads
    sender = ChatSender(transport, ThreadStore(store.engine))
    sender.start()
    sender.post("5aaded876eda", lambda: stage_message(...))   # never blocks, never raises
    sender.respond(response_url, answer("approved"))
    sender.stop()

The loop must never wait for chat nor fail because of it: ``post``/``respond`` only put a
job on a bounded queue (a full queue drops the job, logs it and counts it); one daemon
thread builds each message (reading SQL there, off the event loop) and delivers it with
retries and exponential backoff (``Retry-After`` honoured), logging what it gives up on.
One thread keeps an incident's messages in order.

Threading: ``chat.postMessage`` answers with the message's ``ts``; the first message of an
incident stores (incident, channel, ts) in ``chat_thread`` and later ones go to that
thread (``thread_ts``), across restarts. Incoming webhooks (Slack, Mattermost) return no
ts: their messages are posted unthreaded and name the incident.

Errors: ``ChatDeliveryError`` (a MendloopError) is what a transport raises; ``retryable``
says whether trying again can help (timeouts, 429, 5xx) or not (401, a bad channel).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.chatops.blocks import ChatMessage
from kernel.errors import MendloopError
from kernel.models import utcnow
from loop.db.migrate import ensure_schema
from loop.db.schema import ChatThreadRecord

log = logging.getLogger("mendloop.chat")


class ChatDeliveryError(MendloopError):
    """The chat service did not take a message (``retryable``: worth trying again)."""

    def __init__(self, message: str, retryable: bool, retry_after_s: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        super().__init__(message)


@dataclass(frozen=True)
class Posted:
    channel: str | None
    ts: str | None  # None: the service does not thread (incoming webhook)


class ChatTransport(Protocol):
    """How messages reach the chat service."""

    threaded: bool

    def post(self, payload: dict[str, Any], thread_ts: str | None) -> Posted: ...

    def respond(self, response_url: str, payload: dict[str, Any]) -> None: ...


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpTransport:
    """JSON over HTTP with foreign errors mapped to ChatDeliveryError (base of both)."""

    threaded = False

    def __init__(self, timeout_s: float = 10.0, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(timeout=timeout_s)

    def _send(
        self, url: str, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            response = self.client.post(url, json=payload, headers=headers or {})
        except httpx.HTTPError as exc:  # connect errors, timeouts: the service may come back
            raise ChatDeliveryError(f"chat service not reachable: {exc!r}", True) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise ChatDeliveryError(
                f"chat service answered {response.status_code}", True, _retry_after(response)
            )
        if response.status_code >= 400:
            raise ChatDeliveryError(
                f"chat service refused the message: {response.status_code} {response.text[:200]!r}",
                False,
            )
        return response

    def respond(self, response_url: str, payload: dict[str, Any]) -> None:
        self._send(response_url, payload)

    def close(self) -> None:
        self.client.close()


class WebhookTransport(HttpTransport):
    """An incoming webhook (Slack or Mattermost): no ts comes back, so no threads."""

    def __init__(self, url: str, timeout_s: float = 10.0, client: httpx.Client | None = None):
        super().__init__(timeout_s, client)
        self.url = url

    def post(self, payload: dict[str, Any], thread_ts: str | None) -> Posted:
        self._send(self.url, payload)
        return Posted(channel=None, ts=None)


class WebApiTransport(HttpTransport):
    """Slack's Web API ``chat.postMessage`` with a bot token: returns ``ts``, so threads."""

    threaded = True

    def __init__(
        self,
        api_url: str,
        token: str,
        channel: str,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(timeout_s, client)
        self.url = api_url.rstrip("/") + "/chat.postMessage"
        self.token = token
        self.channel = channel

    def post(self, payload: dict[str, Any], thread_ts: str | None) -> Posted:
        body = {"channel": self.channel, **payload}
        if thread_ts:
            body["thread_ts"] = thread_ts
        response = self._send(
            self.url,
            body,
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            data = response.json()
        except ValueError as exc:
            raise ChatDeliveryError("chat.postMessage answered no JSON", True) from exc
        if not isinstance(data, dict):
            raise ChatDeliveryError("chat.postMessage answered no JSON object", True)
        if not data.get("ok"):
            error = str(data.get("error", "unknown error"))[:200]
            raise ChatDeliveryError(f"chat.postMessage: {error!r}", error == "ratelimited")
        return Posted(channel=data.get("channel") or self.channel, ts=data.get("ts"))


class ThreadStore:
    """incident -> (channel, ts) of its first chat message, in the incident database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_schema(engine)

    def get(self, incident_id: str) -> tuple[str, str] | None:
        with Session(self.engine) as session:
            row = session.get(ChatThreadRecord, incident_id)
            return (row.channel, row.ts) if row else None

    def save(self, incident_id: str, channel: str | None, ts: str) -> None:
        """The first thread of an incident stays its thread (a second save is ignored)."""
        with Session(self.engine) as session:
            session.add(
                ChatThreadRecord(
                    incident_id=incident_id, channel=channel or "", ts=ts, created_at=utcnow()
                )
            )
            with contextlib.suppress(IntegrityError):
                session.commit()


Build = Callable[[], ChatMessage | None]


@dataclass(frozen=True)
class _Job:
    kind: Literal["post", "respond"]
    incident_id: str | None
    build: Build
    response_url: str | None = None
    ephemeral: bool = False
    replace: bool = False


_STOP = object()


class ChatSender:
    """The background sender: a bounded queue and one thread with retries and backoff."""

    def __init__(
        self,
        transport: ChatTransport,
        threads: ThreadStore | None = None,
        max_queue: int = 1000,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.transport = transport
        self.threads = threads
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = {"sent": 0, "failed": 0, "dropped": 0, "retried": 0}

    # -- producers (any thread, the event loop included): never block -------------------

    def post(self, incident_id: str | None, build: Build | ChatMessage) -> bool:
        """Queue a message for the incident's thread; False when it had to be dropped."""
        return self._put(_Job("post", incident_id, _builder(build)))

    def respond(
        self,
        response_url: str,
        message: ChatMessage,
        incident_id: str | None = None,
        *,
        ephemeral: bool = False,
        replace: bool = False,
    ) -> bool:
        """Queue an answer to an interaction (its ``response_url``): seen by the clicker
        only (``ephemeral``), replacing the message that had the buttons (``replace``), or
        else posted in the incident's thread."""
        return self._put(
            _Job("respond", incident_id, _builder(message), response_url, ephemeral, replace)
        )

    def _put(self, job: _Job) -> bool:
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            self.counts["dropped"] += 1
            log.warning(
                "chat queue full (%d): message for incident %s dropped",
                self._queue.maxsize,
                job.incident_id,
            )
            return False

    # -- the sender thread ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mendloop-chat", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the job in hand (pending retries are abandoned, and logged)."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        close = getattr(self.transport, "close", None)
        if callable(close):
            close()

    def flush(self) -> None:
        """Until every queued job was delivered or given up (tests, shutdown)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                self._deliver(job)
            except Exception:  # the sender thread must survive anything a job does
                log.exception("chat job for incident %s failed", getattr(job, "incident_id", ""))
                self.counts["failed"] += 1
            finally:
                self._queue.task_done()

    def _deliver(self, job: _Job) -> None:
        message = job.build()
        if message is None:
            return
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._send(job, message)
                self.counts["sent"] += 1
                return
            except ChatDeliveryError as exc:
                if not exc.retryable or attempt == self.max_attempts:
                    self.counts["failed"] += 1
                    log.error(
                        "chat message for incident %s not delivered after %d attempt(s): %s",
                        job.incident_id,
                        attempt,
                        exc,
                    )
                    return
                wait = exc.retry_after_s
                if wait is None:
                    wait = self.backoff_s * 2 ** (attempt - 1)
                wait = min(wait, self.max_backoff_s)
                self.counts["retried"] += 1
                log.warning(
                    "chat message for incident %s: %s; retry %d in %.1f s",
                    job.incident_id,
                    exc,
                    attempt,
                    wait,
                )
                if self._stopping.wait(wait):
                    log.warning("chat sender stopping: message for %s abandoned", job.incident_id)
                    return

    def _send(self, job: _Job, message: ChatMessage) -> None:
        thread = self.threads.get(job.incident_id) if self.threads and job.incident_id else None
        if job.kind == "respond":
            payload = {
                **message.payload(),
                "response_type": "ephemeral" if job.ephemeral else "in_channel",
                "replace_original": job.replace,
            }
            if thread is not None and not job.replace:
                payload["thread_ts"] = thread[1]
            assert job.response_url is not None
            self.transport.respond(job.response_url, payload)
            return
        posted = self.transport.post(message.payload(), thread[1] if thread else None)
        if thread is None and posted.ts and self.threads and job.incident_id:
            self.threads.save(job.incident_id, posted.channel, posted.ts)


def _builder(build: Build | ChatMessage) -> Build:
    if isinstance(build, ChatMessage):
        message = build
        return lambda: message
    return build
