"""`mendloop approve | reject`: a person's verdict on a waiting fix, through the running
daemon's REST API (the same calls as the web page and chat make).

    incident = verdict(url, "5aaded876eda", "approve", by="bob", comment="ok",
                       plan_hash=None, headers=auth_headers(settings), say=print_to_stderr)

An approval names the plan it approves (the API answers 428 without one): the hash, or its
first 8+ hex digits, of the plan the person reviewed (``--plan-hash``), checked against
the current plan; or, when none is named, the plan current now, fetched and shown before
it is approved. A plan that changes between that fetch and the approval is refused by the
API (409): what is approved is always what was shown.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

import httpx

from kernel.config import Settings
from kernel.errors import MendloopError
from mendloop.output import auth_headers, print_json

_HASH = re.compile(r"[0-9a-f]{8,64}")


def verdict(
    url: str,
    incident_id: str,
    verb: str,
    by: str,
    comment: str,
    plan_hash: str | None,
    headers: dict[str, str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """POST the verdict; the incident's summary, or MendloopError with the API's reason."""
    base = f"{url}/v1/incidents/{incident_id}"
    body: dict[str, Any] = {"by": by, "comment": comment}
    try:
        if verb == "approve":
            current = plan_to_approve(base, plan_hash, headers, say)
            if current is not None:
                body["plan_hash"] = current
        response = httpx.post(f"{base}/{verb}", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise MendloopError(
            f"daemon not reachable at {url} ({exc}); is `mendloop run` up?"
        ) from exc
    if response.status_code >= 400:
        raise MendloopError(f"{verb} refused: HTTP {response.status_code} {_detail(response)}")
    answer: dict[str, Any] = response.json()
    return answer


def plan_to_approve(
    base: str, named: str | None, headers: dict[str, str], say: Callable[[str], None]
) -> str | None:
    """The full hash of the plan to approve (None: the incident has no plan, so there is
    nothing to name). ``named`` must be the current plan's hash or a prefix of it."""
    if named is not None and not _HASH.fullmatch(named):
        raise MendloopError(f"--plan-hash {named!r}: 8 to 64 lower-case hex digits")
    answer = httpx.get(f"{base}/plan", headers=headers, timeout=30)
    if answer.status_code == 404 and "has no plan" in _detail(answer) and named is None:
        return None
    if answer.status_code >= 400:
        raise MendloopError(f"approve refused: HTTP {answer.status_code} {_detail(answer)}")
    plan = answer.json()
    current = str(plan.get("plan_hash", ""))
    if named is not None and not current.startswith(named):
        raise MendloopError(
            f"approve refused: the plan changed since you reviewed it (you named {named[:12]}, "
            f"the current plan_hash is {current}); review it again: GET {base}/plan"
        )
    hosts = ", ".join(plan.get("hosts") or ())
    say(
        f"approving plan {current[:12]}: {plan.get('playbook')} on {hosts} "
        f"(risk {plan.get('risk')}, dry run: {plan.get('changed')} change(s))"
    )
    return current


def _detail(response: httpx.Response) -> str:
    if not response.content:
        return ""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    return str(data.get("detail", data)) if isinstance(data, dict) else str(data)[:300]


def cmd_verdict(args: argparse.Namespace, settings: Settings) -> int:
    """`mendloop approve|reject INCIDENT`: through the running daemon's REST API, the same
    call a person or the chat integration makes; an approval names the plan it approves
    (``--plan-hash``, else the current plan, shown on stderr)."""
    incident = verdict(
        args.url or f"http://{settings.api_host}:{settings.api_port}",
        args.incident,
        args.command,
        by=args.by,
        comment=args.comment,
        plan_hash=args.plan_hash,
        headers=auth_headers(settings),
        say=lambda line: print(line, file=sys.stderr),
    )
    if args.json:
        print_json(incident)
    else:
        print(f"incident {incident['id']}: {incident['state']}")
    return 0
