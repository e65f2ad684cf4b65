#!/usr/bin/python
"""Ansible module: flush the keys of a Redis cache that match a pattern (SCAN + UNLINK).

    - mendloop_redis_flush:
        host: 127.0.0.1
        port: 6379
        db: 0
        pattern: "cache:*"           # only these keys; "*" flushes the whole db
        password: "{{ redis_password | default(omit) }}"   # from the inventory, no_log

Speaks the Redis protocol (RESP) itself over one TCP connection, so key names are bytes
end to end: a key containing a newline or a space cannot make another key be deleted, as
it could through ``redis-cli --scan | xargs``. SCAN walks the keyspace in batches without
blocking the server (unlike KEYS), UNLINK frees memory in the background. Check mode counts
the matching keys and deletes nothing. No rollback: a flushed cache is warmed again (the
playbook fetches the warm-up URLs the inventory lists), not restored.
"""

from __future__ import annotations

import socket

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mendloop_redis_flush
short_description: Delete the Redis keys matching a pattern (SCAN + UNLINK, binary-safe).
options:
  host: {type: str, default: 127.0.0.1}
  port: {type: int, default: 6379}
  db: {type: int, default: 0}
  pattern: {type: str, required: true}
  password: {type: str, no_log: true}
  username: {type: str}
  batch: {type: int, default: 500}
  timeout: {type: float, default: 10}
"""


class RedisError(Exception):
    """An error reply or a broken connection."""


class Resp:
    """The few RESP2 commands this module needs, on one socket."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def call(self, *args: bytes | str | int) -> object:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        frame = b"*%d\r\n" % len(parts) + b"".join(
            b"$%d\r\n%s\r\n" % (len(p), p) for p in parts
        )
        self.sock.sendall(frame)
        return self.reply()

    def reply(self) -> object:
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body
        if kind == b"-":
            raise RedisError(body.decode("utf-8", "replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = self.file.read(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise RedisError(f"unexpected reply {line[:40]!r}")


def flush(client: Resp, pattern: str, batch: int, delete: bool) -> int:
    """Matching keys deleted (or counted); SCAN may return a key twice, UNLINK counts once."""
    cursor, total = b"0", 0
    while True:
        reply = client.call("SCAN", cursor, "MATCH", pattern, "COUNT", batch)
        if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], list):
            raise RedisError("unexpected SCAN reply")
        cursor, keys = reply[0], [k for k in reply[1] if isinstance(k, bytes)]
        if keys and delete:
            unlinked = client.call("UNLINK", *keys)
            total += unlinked if isinstance(unlinked, int) else 0
        elif keys:
            total += len(keys)
        if cursor == b"0":
            return total


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 6379},
            "db": {"type": "int", "default": 0},
            "pattern": {"type": "str", "required": True},
            "password": {"type": "str", "no_log": True},
            "username": {"type": "str"},
            "batch": {"type": "int", "default": 500},
            "timeout": {"type": "float", "default": 10},
        },
        supports_check_mode=True,
    )
    args = module.params
    if not args["pattern"] or not 1 <= args["batch"] <= 10000:
        module.fail_json(msg="pattern must be non-empty and batch within 1..10000")
    try:
        client = Resp(args["host"], args["port"], args["timeout"])
    except OSError as exc:
        module.fail_json(msg=f"cannot reach redis at {args['host']}:{args['port']}: {exc}")
    try:
        if args["password"]:
            auth = [args["username"]] if args["username"] else []
            client.call("AUTH", *auth, args["password"])
        client.call("SELECT", args["db"])
        before = client.call("DBSIZE")
        count = flush(client, args["pattern"], args["batch"], delete=not module.check_mode)
        after = client.call("DBSIZE")
    except (OSError, RedisError, ValueError) as exc:
        module.fail_json(msg=f"redis: {exc}")
    finally:
        client.close()
    module.exit_json(changed=count > 0, keys=count, dbsize_before=before, dbsize_after=after)


if __name__ == "__main__":
    main()
