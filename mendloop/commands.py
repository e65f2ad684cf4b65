"""Small commands: the local Neo4j (start/stop/status) and the digital twin (run it alone,
inject or clear a fault on a running one through its HTTP control surface).

    mendloop neo4j start|stop|status [--json]
    mendloop twin run [--targets A,B] [--push URL]
    mendloop twin inject FAULT [--target T] [--intensity X]  /  mendloop twin clear
"""

from __future__ import annotations

import argparse

import httpx

from kernel.config import Settings
from kernel.errors import MendloopError
from mendloop import local_neo4j
from mendloop.output import print_json, stderr_progress
from twin.server import run_forever


def cmd_neo4j(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "start":
        local_neo4j.ensure_built(stderr_progress)
        status = local_neo4j.start(settings)
    elif args.action == "stop":
        stopped = local_neo4j.stop(settings)
        status = local_neo4j.status(settings)
        stderr_progress("stopped" if stopped else "was not running")
    else:
        status = local_neo4j.status(settings)
    if args.json:
        print_json(status.__dict__)
    else:
        state = "running" if status.running else "stopped"
        print(
            f"neo4j {state} (pid {status.pid}) {status.uri} bolt_ok={status.bolt_ok} "
            f"{status.detail}"
        )
    return 0 if args.action == "stop" or status.running else 1


def cmd_twin(args: argparse.Namespace, settings: Settings) -> int:
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    run_forever(
        targets=targets,
        seed=args.seed,
        tick_s=args.tick,
        host=settings.twin_host,
        port=settings.twin_port,
        push=args.push,
        token=settings.api_token,
    )
    return 0


def cmd_twin_control(args: argparse.Namespace, settings: Settings) -> int:
    """Drive a running twin through its HTTP control surface (what a playbook does too)."""
    url = args.url or f"http://{settings.twin_host}:{settings.twin_port}"
    if args.twin_command == "inject":
        path, body = "/faults", {"target": args.target, "fault": args.fault}
        if args.intensity is not None:
            body["intensity"] = args.intensity
    else:
        path, body = "/clear", {"target": args.target}
    try:
        response = httpx.post(f"{url}{path}", json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise MendloopError(
            f"twin not reachable at {url} ({exc}); start it: mendloop twin run"
        ) from exc
    if response.status_code >= 400:
        raise MendloopError(f"twin refused: HTTP {response.status_code} {response.text}")
    state = response.json()
    state.pop("values", None)  # the 286 current values: GET <twin>/state/<target> has them
    print_json(state)
    return 0
