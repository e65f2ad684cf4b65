"""What every command prints with: one JSON object on stdout, progress on stderr, and the
CLI's API token for calls to a running daemon. Light (no heavy imports): the parser uses it.

    print_json({"ok": True})           # --json: exactly one object on stdout
    stderr_progress("starting ...")    # progress and logs: stderr
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from kernel.config import Settings

Progress = Callable[[str], None]


def print_json(obj: object) -> None:
    print(json.dumps(obj, default=str))


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def auth_headers(settings: Settings) -> dict[str, str]:
    """The CLI's token (MENDLOOP_API_TOKEN) for calls to the daemon's API."""
    return {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
