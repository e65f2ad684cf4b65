"""Live stage events for the web page: an engine listener feeding Server-Sent Events.

    hub = EventHub()
    engine.listeners.append(hub.publish)        # called from the engine's loop (any thread)
    async with hub.subscribe(after=last_id) as sub:   # one per connected browser
        event = await sub.get(timeout=15)        # None: nothing within 15 s (keep-alive)

The engine must never wait for a browser, so ``publish`` only hands the event to each
subscriber's own asyncio loop (``call_soon_threadsafe``) and returns. Every subscriber has
a bounded queue: when a slow client falls ``max_queue`` events behind, its backlog is
dropped and it gets one ``resync`` event instead (the page then reloads the board), so
memory stays bounded whatever the client does. The hub keeps the last ``history`` events,
so a client that reconnects with the id of the last event it saw gets what it missed (or
``resync`` when that is too old).

Stream tickets. ``EventSource`` cannot send an ``Authorization`` header, and an API token
must not travel in a URL (URLs end up in logs and browser history). So a caller with a
token asks for a ticket (``POST /v1/events/ticket`` with its Bearer header) and opens the
stream with ``GET /v1/events?ticket=...``. A ticket is ``<payload>.<hmac>``: the caller's
name and role, an expiry (60 s) and a nonce, signed with HMAC-SHA256 under a key that
lives only in this process. It opens one stream once (the nonce is remembered until the
ticket expires), so a ticket seen in a log is already useless.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

from api.auth import Principal, Role
from loop.cluster.guards import TicketTable
from loop.events import StageEvent  # the event only: the daemon is not needed to serve events


@dataclass(frozen=True)
class HubEvent:
    """One message on the stream: ``kind`` is ``stage`` (an incident moved), ``automation``
    (paused or resumed) or ``resync`` (events were lost for this client: reload)."""

    id: int
    kind: str
    data: dict[str, Any]

    def sse(self) -> str:
        """The event in text/event-stream framing (one ``data:`` line of JSON)."""
        payload = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {payload}\n\n"


def stage_data(event: StageEvent) -> dict[str, Any]:
    return {
        "incident_id": event.incident_id,
        "target": event.target,
        "state": event.state.value if event.state is not None else None,
        "note": event.note,
        "at": event.at.isoformat(),
    }


class Subscription:
    """One client's bounded queue, living on the asyncio loop that subscribed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_queue: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[HubEvent | None] = asyncio.Queue()
        self.max_queue = max_queue
        self.dropped = 0
        self._pending = 0  # events in the queue (the queue itself is unbounded: we bound it)

    def offer(self, event: HubEvent | None) -> None:
        """On the subscriber's loop: enqueue, or on overflow replace the backlog by resync."""
        if event is None:  # the hub closes: end the stream
            self.queue.put_nowait(None)
            return
        if self._pending >= self.max_queue:
            self.dropped += self._pending
            while not self.queue.empty():
                self.queue.get_nowait()
            self._pending = 1
            self.queue.put_nowait(
                HubEvent(event.id, "resync", {"reason": "the client fell behind"})
            )
            return
        self._pending += 1
        self.queue.put_nowait(event)

    async def get(self, timeout: float) -> HubEvent | None:
        """The next event, or None after ``timeout`` seconds without one; raises
        ``StreamClosed`` when the hub was closed."""
        try:
            event = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if event is None:
            raise StreamClosed
        self._pending = max(0, self._pending - 1)
        return event


class StreamClosed(Exception):
    """The hub was closed (the server is shutting down): end the stream."""


class EventHub:
    """Fans the engine's stage events out to every connected client (thread-safe)."""

    def __init__(self, max_queue: int = 256, history: int = 512, max_clients: int = 100) -> None:
        self.max_queue = max_queue
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._history: deque[HubEvent] = deque(maxlen=history)
        self._next_id = 1
        self.closed = False

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._subs)

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    def publish(self, event: StageEvent) -> None:
        """The engine listener: never blocks, never raises into the engine. An incident's
        move is a ``stage`` event; automation paused/resumed is an ``automation`` event."""
        if event.kind == "automation":
            self.send("automation", stage_data(event))
        elif event.incident_id and event.state is not None:
            self.send("stage", stage_data(event))

    def send(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            if self.closed:
                return
            hub_event = HubEvent(self._next_id, kind, data)
            self._next_id += 1
            self._history.append(hub_event)
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):  # that client's loop is gone
                sub.loop.call_soon_threadsafe(sub.offer, hub_event)

    @contextlib.asynccontextmanager
    async def subscribe(self, after: int | None = None) -> AsyncIterator[Subscription]:
        """A subscription for the current loop; with ``after``, the events since that id
        first (or one ``resync`` when they are no longer kept). Raises ``TooManyClients``."""
        sub = Subscription(asyncio.get_running_loop(), self.max_queue)
        with self._lock:
            if self.closed:
                raise StreamClosed
            if len(self._subs) >= self.max_clients:
                raise TooManyClients(f"{len(self._subs)} event streams are open already")
            if after is not None and after < self._next_id - 1:
                kept = [e for e in self._history if e.id > after]
                if not kept or kept[0].id != after + 1:
                    sub.offer(HubEvent(self._next_id - 1, "resync", {"reason": "too far behind"}))
                else:
                    for event in kept:
                        sub.offer(event)
            self._subs.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subs.discard(sub)

    def close(self) -> None:
        """End every open stream (shutdown): uvicorn waits for open responses to finish."""
        with self._lock:
            self.closed = True
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.offer, None)


class TooManyClients(Exception):
    """More event streams than the hub allows: the caller answers 503."""


class StreamingServer(uvicorn.Server):
    """uvicorn waits for open responses to finish before it stops, and an event stream
    never finishes on its own: this server ends the hub's streams first, so a shutdown with
    browsers connected is as quick and quiet as one without.

        server = StreamingServer(uvicorn.Config(app, ...), hub)
    """

    def __init__(self, config: uvicorn.Config, hub: EventHub) -> None:
        super().__init__(config)
        self.hub = hub

    async def shutdown(self, sockets: Any = None) -> None:
        self.hub.close()
        await super().shutdown(sockets)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTickets:
    """Short-lived, single-use, signed permissions to open one event stream."""

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._key = secrets.token_bytes(32)  # per process: a restart voids every ticket
        self._used: dict[str, float] = {}  # nonce -> expiry
        self._lock = threading.Lock()

    def issue(self, who: Principal) -> str:
        payload = {
            "sub": who.name,
            "role": who.role.value,
            "exp": self.clock() + self.ttl_s,
            "n": secrets.token_hex(8),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def redeem(self, ticket: str) -> Principal | None:
        """The caller the ticket was issued to, once; None when forged, expired or used."""
        body, _, signature = ticket.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            name, role, expiry, nonce = (
                str(payload["sub"]),
                Role(payload["role"]),
                float(payload["exp"]),
                str(payload["n"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        now = self.clock()
        if expiry < now:
            return None
        with self._lock:
            self._used = {n: exp for n, exp in self._used.items() if exp >= now}
            if nonce in self._used:
                return None
            self._used[nonce] = expiry
        return Principal(name=name, role=role, via="ticket")


class SharedStreamTickets(StreamTickets):
    """Stream tickets in SQL (several workers): issued by one, redeemed once by any; the
    ticket is a random nonce, its row says who and until when (loop/cluster/guards.py)."""

    def __init__(self, table: TicketTable, ttl_s: float = 60.0) -> None:
        super().__init__(ttl_s)
        self.table = table

    def issue(self, who: Principal) -> str:
        return self.table.issue(who.name, who.role.value, self.ttl_s)

    def redeem(self, ticket: str) -> Principal | None:
        found = self.table.redeem(ticket)
        if found is None:
            return None
        try:
            return Principal(name=found[0], role=Role(found[1]), via="ticket")
        except ValueError:
            return None
