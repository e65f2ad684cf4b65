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


def _tokens(settings: Any) -> Any:
    from api.auth import TokenStore
    from loop.store import IncidentStore

    store = IncidentStore(settings.database_url)
    return TokenStore(store.engine)


def cmd_token(args: argparse.Namespace, settings: Any) -> int:
    from api.auth import Role

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


def register(sub: Any) -> None:
    from api.auth import Role

    token = sub.add_parser("token", help="API tokens (hashed at rest) and their roles")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="a new token; printed once")
    create.add_argument("name", help="who it is for (e.g. alice, grafana, chatops)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--by", default="cli", help="who creates it (kept on the token)")
    listing = token_sub.add_parser("list", help="tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="revoked ones too")
    revoke = token_sub.add_parser("revoke", help="revoke by id, or every live token of a name")
    revoke.add_argument("token", help="token id or name")
    for p in (create, listing, revoke):
        p.set_defaults(func=cmd_token)
        p.add_argument("--json", action="store_true", help="one JSON object on stdout")
