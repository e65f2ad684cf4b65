"""The redis pack's lab scenario: a Debian redis-server (config file in the lab folder, no
systemd) and prometheus-redis-exporter on free loopback ports, and three faults:

- ``redis_down``: the server is SIGKILLed; the fix is linux-host's identity-checked restart
  from the inventory's ``mendloop_processes`` (the restarted server is adopted by the lab);
- ``memory_pressure``: keys written until used_memory is 95 % of maxmemory (noeviction);
- ``too_many_clients``: idle connections opened until 95 % of maxclients are taken.

Between faults ``reset`` puts the base settings back (FLUSHALL, maxmemory, maxclients,
the idle connections closed), so a fault can be run again on the next path.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

from kernel.config import PACKS_DIR
from mendloop.labpacks import Fault
from mendloop.labsite import write_site
from mendloop.servicelab import Lab, LabError, free_port, need

REDIS = os.environ.get("MENDLOOP_REDIS_BIN", "/usr/bin/redis-server")
EXPORTER = os.environ.get("MENDLOOP_REDIS_EXPORTER_BIN", "/usr/bin/prometheus-redis-exporter")
PACK_DIR = PACKS_DIR / "redis"
MAXMEMORY = 8 * 1024 * 1024
MAXCLIENTS = 40


def redis_call(port: int, *args: str | bytes, sock: socket.socket | None = None) -> Any:
    """One command over RESP (a small client: the lab needs no Redis library); an error
    reply comes back as a RedisReplyError."""
    own = sock is None
    conn = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        wire = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        conn.sendall(wire)
        with conn.makefile("rb") as reader:
            return _reply(reader)
    finally:
        if own:
            conn.close()


class RedisReplyError(LabError):
    """Redis answered a command with an error."""


def _reply(reader: Any) -> Any:
    line = reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisReplyError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2]
    if kind == b"*":
        return [_reply(reader) for _ in range(max(int(rest), 0))]
    raise ConnectionError(f"bad RESP reply {line[:40]!r}")


def info(port: int) -> dict[str, str]:
    text = redis_call(port, "INFO").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and line[0] != "#")


class RedisScenario:
    """redis-server + prometheus-redis-exporter under ``lab``, for the target ``redis-1``."""

    pack = "redis"
    target = "redis-1"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.folder = lab.root / "redis"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.pidfile = self.folder / "redis.pid"
        self.conf = self.folder / "redis.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\npidfile {self.pidfile}\n"
            f'dir {self.folder}\nsave ""\nappendonly no\nmaxmemory {MAXMEMORY}\n'
            f"maxmemory-policy noeviction\nmaxclients {MAXCLIENTS}\n"
            f"logfile {self.folder / 'redis.log'}\n"
        )
        self.start_argv = [need(REDIS, "redis-server"), str(self.conf)]
        server = lab.spawn("redis-server", self.start_argv)
        lab.adopt_pidfile(self.pidfile, REDIS)  # once a playbook restarted it detached
        lab.wait_port(self.port, server)
        exporter_port = free_port()
        exporter = lab.spawn(
            "redis-exporter",
            [
                need(EXPORTER, "prometheus-redis-exporter"),
                f"--redis.addr=redis://127.0.0.1:{self.port}",
                f"--web.listen-address=127.0.0.1:{exporter_port}",
            ],
        )
        lab.wait_http(f"http://127.0.0.1:{exporter_port}/metrics", exporter)
        self.scrape = {"redis": [f"127.0.0.1:{exporter_port}"]}
        self.labels = {"redis": {"target": self.target}}
        self.clients: list[socket.socket] = []
        self.faults = [
            Fault("redis_down", "process_down", self.kill, self.answers, self.reset),
            Fault(
                "memory_pressure",
                "redis_memory_pressure",
                self.fill_memory,
                self.memory_ok,
                self.reset,
            ),
            Fault(
                "too_many_clients",
                "redis_too_many_clients",
                self.open_clients,
                self.clients_ok,
                self.reset,
            ),
        ]

    # -- the site --------------------------------------------------------------------

    def inventory(self) -> dict[str, Any]:
        """The host vars of the target's host: its Redis and how to restart it."""
        return {
            "mendloop_process": "redis",
            "mendloop_processes": {
                "redis": {
                    "pidfile": str(self.pidfile),
                    "executable": REDIS,
                    "cmdline": rf"127\.0\.0\.1:{self.port}",
                    "start": self.start_argv,
                    "chdir": str(self.folder),
                    "port": self.port,
                }
            },
            "mendloop_redis": {
                "host": "127.0.0.1",
                "port": self.port,
                "maxmemory_limit_bytes": 4 * MAXMEMORY,
                "maxclients_limit": 4 * MAXCLIENTS,
            },
        }

    def site(self, folder: Path) -> Path:
        return write_site(
            folder,
            "redis-lab",
            include=[self.pack],
            targets={
                self.target: {
                    "components": ["redis", "process"],
                    "device_type": "redis",
                    "hosts": [self.target],
                }
            },
            hosts={self.target: self.inventory()},
        )

    def rule_files(self) -> list[Path]:
        return [PACK_DIR / "prometheus" / "redis.rules.yml"]

    # -- faults ----------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the running server (the lab's child or the one a playbook started)."""
        for proc in self.lab.procs:
            if proc.name == "redis-server" and proc.alive:
                proc.kill()
                return
        pid = int(self.pidfile.read_text().strip())
        if os.path.realpath(os.readlink(f"/proc/{pid}/exe")) != os.path.realpath(REDIS):
            raise LabError(f"pid {pid} of {self.pidfile} is not redis-server")
        os.kill(pid, signal.SIGKILL)
        self.lab.wait(lambda: not self.answers(), "redis-server gone", 30)

    def answers(self) -> bool:
        try:
            return bool(redis_call(self.port, "PING") == "PONG")
        except (OSError, LabError):
            return False

    def memory_ratio(self) -> float:
        values = info(self.port)
        return int(values["used_memory"]) / max(int(values["maxmemory"]), 1)

    def fill_memory(self, share: float = 0.95) -> None:
        """Write 64 KiB values until used_memory is ``share`` of maxmemory."""
        value = os.urandom(32 * 1024).hex().encode()
        key = 0
        while self.memory_ratio() < share:
            redis_call(self.port, "SET", f"lab:fill:{key}", value)
            key += 1

    def memory_ok(self) -> bool:
        return self.answers() and self.memory_ratio() < 0.8

    def open_clients(self, share: float = 0.95) -> None:
        """Idle connections until ``share`` of maxclients are connected."""
        maxclients = int(redis_call(self.port, "CONFIG", "GET", "maxclients")[1])
        while int(info(self.port)["connected_clients"]) < share * maxclients:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            redis_call(self.port, "PING", sock=sock)
            self.clients.append(sock)

    def clients_ok(self) -> bool:
        if not self.answers():
            return False
        values = info(self.port)
        maxclients = int(redis_call(self.port, "CONFIG", "GET", "maxclients")[1])
        return int(values["connected_clients"]) < 0.8 * maxclients

    def reset(self) -> None:
        """The idle connections closed, the keys gone, the base limits back."""
        for sock in self.clients:
            sock.close()
        self.clients.clear()
        if not self.answers():
            raise LabError(f"redis on port {self.port} does not answer after the fault")
        redis_call(self.port, "FLUSHALL")
        redis_call(self.port, "CONFIG", "SET", "maxmemory", str(MAXMEMORY))
        redis_call(self.port, "CONFIG", "SET", "maxclients", str(MAXCLIENTS))
