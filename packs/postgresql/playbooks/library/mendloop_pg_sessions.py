#!/usr/bin/python
"""Ansible module: end PostgreSQL sessions of allow-listed users only, in one statement.

    - mendloop_pg_sessions:
        host: 127.0.0.1
        port: 5432
        user: postgres                       # a role that may pg_terminate_backend
        dbname: postgres
        select: idle                         # or: blocking
        allowed: [{user: app, application: batch-loader}]   # from the inventory only
        older_than: 60                       # idle since / transaction open for, seconds
        max_sessions: 100

Why a module: which sessions end must be decided and done in one SQL statement
(``SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ...``), so a backend pid
that ended and was reused between a look and a kill is never hit; every value is a bound
query parameter, never SQL text. ``idle``: sessions idle for ``older_than`` seconds;
``blocking``: sessions other sessions wait for (pg_blocking_pids), in a transaction open
for ``older_than`` seconds. Only sessions whose (user, application_name) is allowed, never
this module's own. Check mode lists what would end and ends nothing. Needs psycopg (3).
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mendloop_pg_sessions
short_description: Terminate idle or blocking PostgreSQL sessions of allow-listed users.
options:
  host: {type: str, default: 127.0.0.1}
  port: {type: int, default: 5432}
  user: {type: str, default: postgres}
  password: {type: str, no_log: true}
  dbname: {type: str, default: postgres}
  select: {type: str, choices: [idle, blocking], required: true}
  allowed: {type: list, elements: dict, required: true, description: "[{user, application?}]"}
  older_than: {type: int, default: 60}
  max_sessions: {type: int, default: 100}
"""

RETURN = r"""
sessions:
  type: list
  description: "[{pid, user, application, database, seconds}] ended (or that would be)"
"""

_ALLOWED = """EXISTS (SELECT 1 FROM unnest(%(users)s::text[], %(apps)s::text[]) AS ok(u, app)
                      WHERE ok.u = a.usename AND (ok.app IS NULL OR ok.app = a.application_name))"""
_WHERE = {
    "idle": """a.state = 'idle' AND a.state_change <= now() - make_interval(secs => %(age)s)""",
    "blocking": """a.xact_start <= now() - make_interval(secs => %(age)s)
                   AND a.pid IN (SELECT unnest(pg_blocking_pids(w.pid)) FROM pg_stat_activity w
                                  WHERE w.wait_event_type = 'Lock')""",
}
_QUERY = """SELECT a.pid, a.usename, a.application_name, a.datname,
                   extract(epoch FROM now() - coalesce(a.xact_start, a.state_change))::int,
                   {action}
              FROM pg_stat_activity a
             WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
               AND {where} AND {allowed}
             ORDER BY coalesce(a.xact_start, a.state_change)
             LIMIT %(limit)s"""


def query(select: str, check: bool) -> str:
    action = "false" if check else "pg_terminate_backend(a.pid)"
    return _QUERY.format(action=action, where=_WHERE[select], allowed=_ALLOWED)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 5432},
            "user": {"type": "str", "default": "postgres"},
            "password": {"type": "str", "no_log": True},
            "dbname": {"type": "str", "default": "postgres"},
            "select": {"type": "str", "choices": ["idle", "blocking"], "required": True},
            "allowed": {"type": "list", "elements": "dict", "required": True},
            "older_than": {"type": "int", "default": 60},
            "max_sessions": {"type": "int", "default": 100},
        },
        supports_check_mode=True,
    )
    args = module.params
    users, apps = [], []
    for entry in args["allowed"]:
        user, app = entry.get("user"), entry.get("application")
        if not isinstance(user, str) or not user or not (app is None or isinstance(app, str)):
            module.fail_json(msg="each allowed entry needs a user and may name an application")
        users.append(user)
        apps.append(app)
    if not users:
        module.fail_json(msg="no allowed users: nothing may be terminated")
    if args["older_than"] < 0 or not 1 <= args["max_sessions"] <= 10000:
        module.fail_json(msg="older_than must be >= 0 and max_sessions 1..10000")
    try:
        import psycopg
    except ImportError:
        module.fail_json(msg="mendloop_pg_sessions needs psycopg (3) on the managed host")
    params = {
        "users": users,
        "apps": apps,
        "age": args["older_than"],
        "limit": args["max_sessions"],
    }
    try:
        with psycopg.connect(
            host=args["host"],
            port=args["port"],
            user=args["user"],
            password=args["password"],
            dbname=args["dbname"],
            connect_timeout=10,
            application_name="mendloop",
            autocommit=True,
        ) as conn:
            rows = conn.execute(query(args["select"], module.check_mode), params).fetchall()
    except psycopg.Error as exc:
        module.fail_json(msg=f"PostgreSQL: {str(exc).strip()[:500]}")
    sessions = [
        {"pid": r[0], "user": r[1], "application": r[2], "database": r[3], "seconds": r[4]}
        for r in rows
    ]
    ended = [s for s, r in zip(sessions, rows, strict=True) if r[5]]
    what = "would end" if module.check_mode else "ended"
    module.exit_json(
        changed=bool(sessions),
        sessions=sessions if module.check_mode else ended,
        msg=f"{what} {len(sessions if module.check_mode else ended)} {args['select']} session(s)",
    )


if __name__ == "__main__":
    main()
