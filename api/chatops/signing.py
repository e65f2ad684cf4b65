"""Slack's request signing, as pure functions (the router is the adapter around them).

    sig = sign(secret, "1700000000", body)              # "v0=<hex>"
    why = check_signature(secret, ts_header, sig_header, body, now=time.time())
    if why is not None: ...                               # refuse with 401, audit ``why``

The scheme (https://api.slack.com/authentication/verifying-requests-from-slack):
``X-Slack-Signature: v0=HMAC-SHA256(signing_secret, "v0:" + timestamp + ":" + raw_body)``
with ``X-Slack-Request-Timestamp`` in unix seconds. A timestamp more than ``window_s``
(5 minutes) away from our clock is refused whatever the signature, so a captured request
cannot be replayed later; within the window, ``ReplayGuard`` refuses the same signature
twice. The comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict

VERSION = "v0"
WINDOW_S = 300.0


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
) -> str | None:
    """None when the request is authentic and fresh, else why not (for the 401 and audit).

    >>> body = b"payload=%7B%7D"
    >>> check_signature("s", "100", sign("s", "100", body), body, now=150.0) is None
    True
    >>> check_signature("s", "100", sign("s", "100", body), body, now=1000.0)
    'stale timestamp: 900 s from our clock (window 300 s)'
    """
    if not secret:
        return "no signing secret configured"
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    try:
        sent = int(timestamp)
    except ValueError:
        return "malformed timestamp"
    skew = abs(now - sent)
    if skew > window_s:
        return f"stale timestamp: {skew:.0f} s from our clock (window {window_s:.0f} s)"
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return "bad signature"
    return None


class ReplayGuard:
    """Signatures seen within the window: the same signed request is taken once.

    Slack's scheme alone lets a captured request be replayed for 5 minutes; remembering
    what was accepted closes that (per process; entries older than the window are dropped,
    so memory is bounded by the traffic of 5 minutes, and by ``max_entries``).
    """

    def __init__(self, window_s: float = WINDOW_S, max_entries: int = 100_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, signature: str, now: float) -> bool:
        """True the first time this signature is offered; remembers it."""
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at <= self.window_s and len(self._seen) < self.max_entries:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True
