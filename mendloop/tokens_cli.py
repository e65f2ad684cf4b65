"""`mendloop token create|list|revoke`: API tokens, straight in the SQL database.

    mendloop token create alice --role approver     # prints the token once
    mendloop token list [--all] [--json]
    mendloop token revoke alice                     # by name (every live token) or id

Run where the daemon's database is reachable (MENDLOOP_DATABASE_URL): no running daemon
is needed, and a revoked token is refused by the daemon on its next request.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api.auth import Role, TokenStore
from loop.store import IncidentStore


def _tokens(settings: Any) -> Any:
    store = IncidentStore(settings.database_url)
    return TokenStore(store.engine)


def cmd_token(args: argparse.Namespace, settings: Any) -> int:
    tokens = _tokens(settings)
    if args.token_command == "create":
        issued = tokens.create(args.name, Role(args.role), by=args.by)
        if args.json:
            print(json.dumps({**issued.info.model_dump(mode="json"), "token": issued.token}))
        else:
            print(issued.token)
            print(
                f"token {issued.info.id} for {issued.info.name} ({issued.info.role}); "
                "shown only now: keep it secret (MENDLOOP_API_TOKEN for the CLI)",
                file=sys.stderr,
            )
        return 0
    if args.token_command == "revoke":
        revoked = tokens.revoke(args.token)
        if args.json:
            print(json.dumps({"revoked": [t.model_dump(mode="json") for t in revoked]}))
        else:
            for info in revoked:
                print(f"revoked {info.id} ({info.name}, {info.role})")
        return 0
    listed = tokens.list(include_revoked=args.all)
    if args.json:
        print(json.dumps({"tokens": [t.model_dump(mode="json") for t in listed]}))
    else:
        for info in listed:
            state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "live"
            used = f"{info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "never"
            print(f"{info.id}  {info.name:<20} {info.role:<9} {state:<22} last used {used}")
    return 0
