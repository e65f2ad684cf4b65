"""Slack's request signing, as pure functions (the router is the adapter around them).

    sig = sign(secret, "1700000000", body)              # "v0=<hex>"
    refusal = check_signature(secret, ts_header, sig_header, body, now=time.time())
    if refusal is not None: ...                           # 401; audit refusal.why, count .reason
    if not guard.first_time(replay_key(ts_header, body), now): ...   # replayed

The scheme (https://api.slack.com/authentication/verifying-requests-from-slack):
``X-Slack-Signature: v0=HMAC-SHA256(signing_secret, "v0:" + timestamp + ":" + raw_body)``
with ``X-Slack-Request-Timestamp`` in unix seconds. Both headers are taken exactly as sent:
a signature that is not ``v0=`` and 64 lowercase hex digits, or a timestamp that is not
plain digits, is refused as malformed (never stripped or re-read), so one signed request
has one spelling only. A timestamp more than ``window_s`` (5 minutes) away from our clock
is refused whatever the signature, so a captured request cannot be replayed later; within
the window, ``ReplayGuard`` refuses the same request twice, keyed on a digest of what was
signed (timestamp and raw body), not on the header's spelling. The comparison is
constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from typing import NamedTuple, Protocol

VERSION = "v0"
WINDOW_S = 300.0

_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Refusal(NamedTuple):
    """Why a callback is refused: ``reason`` is the counter, ``why`` the words (401, audit)."""

    reason: str
    why: str


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value for this timestamp and raw body."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def check_signature(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    window_s: float = WINDOW_S,
) -> Refusal | None:
    """None when the request is authentic and fresh, else why not (for the 401 and audit).

    >>> body = b"payload=%7B%7D"
    >>> check_signature("s", "100", sign("s", "100", body), body, now=150.0) is None
    True
    >>> check_signature("s", "100", sign("s", "100", body), body, now=1000.0).why
    'stale timestamp: 900 s from our clock (window 300 s)'
    >>> check_signature("s", "100", sign("s", "100", body) + " ", body, now=150.0).reason
    'malformed_signature'
    """
    if not secret:
        return Refusal("not_configured", "no signing secret configured")
    if not timestamp or not signature:
        return Refusal("missing_headers", "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    if not _TIMESTAMP.fullmatch(timestamp):
        return Refusal("malformed_timestamp", "malformed timestamp (unix seconds, digits only)")
    if not _SIGNATURE.fullmatch(signature):
        return Refusal("malformed_signature", "malformed signature (v0= and 64 hex digits)")
    skew = abs(now - int(timestamp))
    if skew > window_s:
        return Refusal(
            "stale_timestamp",
            f"stale timestamp: {skew:.0f} s from our clock (window {window_s:.0f} s)",
        )
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return Refusal("bad_signature", "bad signature")
    return None


def replay_key(timestamp: str, body: bytes) -> str:
    """What identifies one signed request for the replay guard: a digest of exactly what
    the signature covers, whatever the spelling of its headers."""
    return hashlib.sha256(f"{VERSION}:{timestamp}:".encode() + body).hexdigest()


class Replays(Protocol):
    """A replay guard: this one (per process) or loop/cluster/guards.py's (SQL, shared by
    several workers)."""

    def first_time(self, key: str, now: float) -> bool: ...


class ReplayGuard:
    """Requests seen within the window (by ``replay_key``): the same one is taken once.

    Slack's scheme alone lets a captured request be replayed for 5 minutes; remembering
    what was accepted closes that (per process; entries older than the window are dropped,
    so memory is bounded by the traffic of 5 minutes, and by ``max_entries``).
    """

    def __init__(self, window_s: float = WINDOW_S, max_entries: int = 100_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str, now: float) -> bool:
        """True the first time this key is offered; remembers it."""
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at <= self.window_s and len(self._seen) < self.max_entries:
                    break
                del self._seen[oldest]
            if key in self._seen:
                return False
            self._seen[key] = now
            return True
