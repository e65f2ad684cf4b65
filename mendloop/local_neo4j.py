"""The development Neo4j: a real Neo4j 5.26 Community over Bolt, without Docker.

Docker is not available everywhere mendloop is developed and neo4j.com downloads are not
either, but Maven Central is: ``deploy/neo4j`` is a tiny Maven project whose launcher
embeds Neo4j Community (GPLv3, a separate process; mendloop only speaks Bolt to it).

    ensure_built(print)            # mvn package, only when the pom/launcher changed
    status = start(settings)       # idempotent; waits until Bolt answers our credentials
    stop(settings)

Data, log and pid file live in ``{var_dir}/neo4j/``. With a password in the settings, auth
is on and the launcher (re)sets user ``neo4j``'s password to it at every start, so the
settings are the single source of truth for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from neo4j import GraphDatabase
from neo4j.exceptions import AuthError, DriverError, Neo4jError

from kernel.config import Settings
from kernel.errors import Neo4jLauncherError

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_DIR = REPO_ROOT / "deploy" / "neo4j"
TARGET_DIR = PROJECT_DIR / "target"
CLASSES_DIR = TARGET_DIR / "classes"
LIB_DIR = TARGET_DIR / "lib"
BUILD_STAMP = TARGET_DIR / ".mendloop-build-stamp"
MAIN_CLASS = "io.mendloop.neo4j.Launcher"
READY_MARK = "MENDLOOP-NEO4J-READY"
PASSWORD_ENV = "MENDLOOP_NEO4J_LAUNCH_PASSWORD"

# What Neo4j 5 on Java 17 wants, as its own distribution passes it. None of them is needed
# to start (checked with 5.26.30), but without them Neo4j runs degraded:
JVM_FLAGS: tuple[str, ...] = (
    # page cache: without it "Reflection access to java.nio.DirectByteBuffer is not
    # available, using fallback mode" (worse performance and memory use)
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    # both needed to reach file descriptors for fadvise on transaction logs; without them
    # every log rotation warns "Unable to advise ... Incorrect file descriptor"
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    # Bolt (Netty): direct buffers without a Cleaner, as the distribution sets it
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
)
_INITIAL_HEAP = 128 * 1024 * 1024  # small -Xms keeps RSS down; any -Xms silences JvmChecker

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Debian's mvn colours even with -B -q

Progress = Callable[[str], None]

_children: dict[int, subprocess.Popen[bytes]] = {}  # launched here; reaped by a thread


@dataclass(frozen=True)
class LocalNeo4jStatus:
    """What ``mendloop neo4j status`` reports (plain fields: the CLI prints ``__dict__``)."""

    running: bool
    pid: int | None
    uri: str
    bolt_ok: bool
    detail: str


def _stderr(message: str) -> None:
    print(f"neo4j: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- build


def _java() -> str:
    """The ``java`` Maven will also use: $JAVA_HOME/bin/java first, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise Neo4jLauncherError(
            "`java` not found: the local Neo4j needs a Java 17 or 21 runtime "
            "(e.g. `apt-get install openjdk-17-jdk-headless`), or set JAVA_HOME"
        )
    return found


def _check_java_version(java: str) -> None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Neo4jLauncherError(f"cannot run {java} -version: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise Neo4jLauncherError(f"cannot tell the Java version from {java}: {out.strip()!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise Neo4jLauncherError(
            f"{java} is Java {major}; Neo4j 5.26 needs Java 17 or 21 (set JAVA_HOME)"
        )


def _newest_source_mtime() -> float:
    sources = [PROJECT_DIR / "pom.xml", *(PROJECT_DIR / "src").rglob("*")]
    return max(p.stat().st_mtime for p in sources if p.is_file())


def _is_built() -> bool:
    launcher = CLASSES_DIR / Path(*MAIN_CLASS.split(".")).with_suffix(".class")
    if not (BUILD_STAMP.is_file() and launcher.is_file() and LIB_DIR.is_dir()):
        return False
    if not any(LIB_DIR.glob("neo4j-5.*.jar")):
        return False
    return BUILD_STAMP.stat().st_mtime >= _newest_source_mtime()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (a CLI and a test run may race to build/start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(progress: Progress | None = None) -> Path:
    """Build ``deploy/neo4j`` with Maven unless an up-to-date build is there.

    Why: the Neo4j jars come from Maven Central at build time (~125 MB the first time, cached
    in ~/.m2 after), so nothing large lives in the repository. Returns the target directory.
    """
    say = progress or (lambda _msg: None)
    if _is_built():
        return TARGET_DIR
    with _file_lock(TARGET_DIR / ".build.lock"):
        if _is_built():  # another process built it while we waited
            return TARGET_DIR
        _check_java_version(_java())
        mvn = shutil.which("mvn")
        if not mvn:
            raise Neo4jLauncherError(
                "`mvn` not found: building the local Neo4j needs Maven 3.8+ "
                "(e.g. `apt-get install maven`)"
            )
        pom_changed = not BUILD_STAMP.is_file() or (
            (PROJECT_DIR / "pom.xml").stat().st_mtime > BUILD_STAMP.stat().st_mtime
        )
        if pom_changed:  # a version bump must not leave the old jars on the classpath
            shutil.rmtree(LIB_DIR, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(PROJECT_DIR / "pom.xml"),
            "package",
        ]
        say(
            "building the local Neo4j with Maven (first time: downloads ~125 MB into ~/.m2, "
            "1-3 min) ..."
        )
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=40)
        done = threading.Event()

        def tick() -> None:  # -q prints nothing while it downloads: say it is alive
            while not done.wait(20):
                say(f"still building ({time.monotonic() - started:.0f}s)")

        threading.Thread(target=tick, daemon=True).start()
        try:
            with subprocess.Popen(
                cmd,
                cwd=PROJECT_DIR,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
            ) as proc:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = _ANSI.sub("", raw).rstrip()
                    if line:
                        tail.append(line)
                        say(f"mvn: {line}")
                returncode = proc.wait()
        except OSError as exc:
            raise Neo4jLauncherError(f"cannot run Maven ({mvn}): {exc}") from exc
        finally:
            done.set()
        if returncode != 0:
            shown = "\n".join(tail) or "(no output)"
            raise Neo4jLauncherError(
                f"building the local Neo4j failed (`{' '.join(cmd)}` exited {returncode}); "
                f"last Maven output:\n{shown}"
            )
        BUILD_STAMP.write_text(f"built {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        say(f"local Neo4j built in {time.monotonic() - started:.0f}s")
    return TARGET_DIR


# ------------------------------------------------------------------------------- process


def _home(settings: Settings) -> Path:
    return (settings.var_dir / "neo4j").resolve()


def _pid_file(settings: Settings) -> Path:
    return _home(settings) / "neo4j.pid"


def _log_file(settings: Settings) -> Path:
    return _home(settings) / "neo4j.log"


def _bolt_host_port(settings: Settings) -> tuple[str, int]:
    host = urlsplit(settings.neo4j_uri).hostname or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    return host, settings.neo4j_bolt_port


def _parse_size(size: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", size.lower())
    if not match:
        raise Neo4jLauncherError(f"bad memory size {size!r} (use e.g. 768m or 1g)")
    return int(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_")


def _alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) process running our launcher."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, someone else's
    proc = Path("/proc") / str(pid)
    if not proc.is_dir():
        return True  # no procfs: trust kill(0)
    try:
        stat = (proc / "stat").read_text()
        if stat[stat.rindex(")") + 2 :].startswith(("Z", "X")):
            return False
        return MAIN_CLASS.encode() in (proc / "cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def _read_pid(settings: Settings) -> int | None:
    """The pid from the pid file if that process still runs; a stale file is removed."""
    pid_file = _pid_file(settings)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if _alive(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


BoltState = Literal["ok", "auth", "down"]


def _bolt_check(settings: Settings, timeout: float = 5.0) -> tuple[BoltState, str]:
    """Does Bolt answer and accept the settings' credentials? ("ok"/"auth"/"down", why)"""
    auth = (settings.neo4j_user, settings.neo4j_password) if settings.neo4j_password else None
    try:
        with GraphDatabase.driver(
            settings.neo4j_uri,
            auth=auth,
            connection_timeout=timeout,
            connection_acquisition_timeout=timeout,
            max_connection_pool_size=1,
        ) as driver:
            driver.verify_connectivity()
    except AuthError as exc:
        return "auth", f"Bolt refuses the credentials of user {settings.neo4j_user!r} ({exc})"
    except (DriverError, Neo4jError, OSError) as exc:
        return "down", f"Bolt not answering ({exc})"
    return "ok", "Bolt answers"


def _auth_error(settings: Settings, pid: int | None, why: str) -> Neo4jLauncherError:
    return Neo4jLauncherError(
        f"the local Neo4j (pid {pid}) is up but {why}. Its launcher sets user 'neo4j' to "
        "NEO4J_PASSWORD at every start: if NEO4J_PASSWORD changed since, run "
        "`mendloop neo4j stop` and start it again (NEO4J_USER must be 'neo4j')."
    )


def _log_tail(settings: Settings, lines: int = 25) -> str:
    """The launcher's own messages (they say why), then the last lines of the log."""
    try:
        text = _log_file(settings).read_text(errors="replace")
    except OSError:
        return "(no log)"
    all_lines = text.splitlines()
    tail = all_lines[-lines:]
    own = [ln for ln in all_lines[:-lines] if ln.startswith("mendloop-neo4j:")]
    return "\n".join([*own[-5:], *(["..."] if own else []), *tail]) or "(empty log)"


def _reap(proc: subprocess.Popen[bytes]) -> None:
    proc.wait()
    _children.pop(proc.pid, None)


def status(settings: Settings) -> LocalNeo4jStatus:
    """Is the local Neo4j running, and does it answer Bolt with our credentials?"""
    host, port = _bolt_host_port(settings)
    pid = _read_pid(settings)
    if pid is None:
        if _port_open(host, port):
            state, why = _bolt_check(settings, timeout=2.0)
            detail = f"not running here, but {_foreign(settings, host, port)}; {why}"
            return LocalNeo4jStatus(False, None, settings.neo4j_uri, state == "ok", detail)
        return LocalNeo4jStatus(False, None, settings.neo4j_uri, False, "not running")
    if not _port_open(host, port):
        return LocalNeo4jStatus(
            True, pid, settings.neo4j_uri, False, f"starting (Bolt port {port} not open yet)"
        )
    state, why = _bolt_check(settings)
    return LocalNeo4jStatus(True, pid, settings.neo4j_uri, state == "ok", why)


def _foreign(settings: Settings, host: str, port: int) -> str:
    return (
        f"{host}:{port} is in use by a process mendloop did not start "
        f"(no live pid in {_pid_file(settings)})"
    )


def start(settings: Settings, wait_s: float = 120) -> LocalNeo4jStatus:
    """Start the local Neo4j (if not already up) and wait until Bolt accepts our login.

    Why a separate, detached JVM: Neo4j is GPLv3 Java; mendloop talks to it over Bolt only,
    and it outlives the command that started it (stop it with ``stop``).
    """
    home = _home(settings)
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / ".launch.lock"):
        host, port = _bolt_host_port(settings)
        pid = _read_pid(settings)
        if pid is not None:
            state, why = _bolt_check(settings)
            if state == "ok":
                return LocalNeo4jStatus(True, pid, settings.neo4j_uri, True, why)
            if state == "auth":
                raise _auth_error(settings, pid, why)
            _stderr(f"already starting (pid {pid}); waiting for it")
            return _wait_ready(settings, pid, None, wait_s)
        if _port_open(host, port):
            raise Neo4jLauncherError(
                f"cannot start the local Neo4j: {_foreign(settings, host, port)}. Stop that "
                "process, or point NEO4J_URI at a free port (or at that server, with "
                "NEO4J_USER/NEO4J_PASSWORD)."
            )

        target = ensure_built(_stderr)
        java = _java()
        heap = settings.neo4j_heap
        xms = min(_INITIAL_HEAP, _parse_size(heap))
        cmd = [
            java,
            *JVM_FLAGS,
            f"-Xms{xms // (1024 * 1024)}m",
            f"-Xmx{heap}",
            "-cp",
            os.pathsep.join([str(target / "classes"), str(target / "lib" / "*")]),
            MAIN_CLASS,
            "--home",
            str(home),
            "--bolt-address",
            f"{host}:{port}",
            "--pagecache",
            settings.neo4j_pagecache,
        ]
        env = dict(os.environ)
        env.pop(PASSWORD_ENV, None)
        if settings.neo4j_password:
            # via the environment, not argv: argv is world-readable in `ps`
            env[PASSWORD_ENV] = settings.neo4j_password
            cmd += ["--password-env", PASSWORD_ENV]

        log_path = _log_file(settings)
        _stderr(f"starting Neo4j on bolt://{host}:{port} (data {home}, log {log_path})")
        with log_path.open("wb") as log:
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=home,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives our Ctrl-C; stopped by stop()
                )
            except OSError as exc:
                raise Neo4jLauncherError(f"cannot run {java}: {exc}") from exc
        _children[proc.pid] = proc
        threading.Thread(target=_reap, args=(proc,), daemon=True).start()
        _pid_file(settings).write_text(f"{proc.pid}\n")
        try:
            return _wait_ready(settings, proc.pid, proc, wait_s)
        except Neo4jLauncherError:
            _terminate(proc.pid, 20)
            _pid_file(settings).unlink(missing_ok=True)
            raise


def _wait_ready(
    settings: Settings,
    pid: int | None,
    proc: subprocess.Popen[bytes] | None,
    wait_s: float,
) -> LocalNeo4jStatus:
    """Wait for the launcher's READY line, then for a successful Bolt login."""
    log_path = _log_file(settings)
    started = time.monotonic()
    deadline = started + wait_s
    ready = False
    last_note = started
    why = "no READY line yet"
    while time.monotonic() < deadline:
        dead = (proc.poll() is not None) if proc is not None else (pid is None or not _alive(pid))
        if dead:
            code = f" (exit code {proc.returncode})" if proc is not None else ""
            raise Neo4jLauncherError(
                f"the local Neo4j exited during start{code}; last lines of {log_path}:\n"
                f"{_log_tail(settings)}"
            )
        if not ready:
            with contextlib.suppress(OSError):
                ready = READY_MARK.encode() in log_path.read_bytes()
        if ready:
            state, why = _bolt_check(settings)
            if state == "auth":
                raise _auth_error(settings, pid, why)
            if state == "ok":
                elapsed = time.monotonic() - started
                _stderr(f"ready on {settings.neo4j_uri} (pid {pid}) after {elapsed:.1f}s")
                return LocalNeo4jStatus(True, pid, settings.neo4j_uri, True, why)
        now = time.monotonic()
        if now - last_note >= 10:
            _stderr(f"still starting ({now - started:.0f}s)")
            last_note = now
        time.sleep(0.25)
    raise Neo4jLauncherError(
        f"the local Neo4j did not become ready within {wait_s:.0f}s ({why}); "
        f"last lines of {log_path}:\n{_log_tail(settings)}"
    )


def _terminate(pid: int, wait_s: float) -> None:
    """SIGTERM (the launcher's shutdown hook closes the stores cleanly), then SIGKILL."""
    proc = _children.get(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.2)
    _stderr(f"pid {pid} did not stop within {wait_s:.0f}s: killing it")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if (proc.poll() is not None) if proc is not None else not _alive(pid):
            return
        time.sleep(0.1)


def stop(settings: Settings, wait_s: float = 60) -> bool:
    """Stop the local Neo4j; False if it was not running (a stale pid file is removed)."""
    pid = _read_pid(settings)
    if pid is None:
        return False
    _stderr(f"stopping pid {pid}")
    _terminate(pid, wait_s)
    _pid_file(settings).unlink(missing_ok=True)
    return True
