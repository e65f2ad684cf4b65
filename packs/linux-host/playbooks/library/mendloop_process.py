#!/usr/bin/python
"""Ansible module: restart one local process, checking it is the expected program first.

    - mendloop_process:
        pidfile: /run/app/app.pid
        executable: /usr/bin/app              # /proc/<pid>/exe must resolve to this
        cmdline: 'app .*--port 6379'          # regex searched in /proc/<pid>/cmdline
        start: [/usr/bin/app, --port, "6379"] # argv, run without a shell
        state: restarted                      # or started: leave a running one alone

Why a module and not shell tasks: the pid in a pid file may have been reused by another
program since it was written (pids wrap). The pid is opened as a pidfd first, then its
/proc identity is checked, then the signal goes through that pidfd: if the process died
and the number was reused in between, the signal reaches nobody (ESRCH), never the new
program. A pid whose identity does not match is refused (never signalled); if another
process with the expected identity runs while the pid file points elsewhere, the module
fails rather than starting a second instance. The start argv comes from the inventory,
never from a finding; it runs detached (own session, stdin /dev/null, output to ``log``).
Check mode reports what would be signalled and started and changes nothing.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mendloop_process
short_description: Restart a local process after checking its identity (pidfd, /proc).
options:
  pidfile: {type: path, required: true, description: the process's pid file}
  executable: {type: path, required: true, description: what /proc/<pid>/exe resolves to}
  cmdline: {type: str, default: "", description: regex searched in the NUL-joined cmdline}
  start: {type: list, elements: str, required: true, description: argv to start it again}
  chdir: {type: path, default: /, description: working directory of the started process}
  log: {type: path, default: /dev/null, description: file its stdout/stderr are appended to}
  daemonizes: {type: bool, default: false, description: start forks and writes the pid file}
  state: {type: str, choices: [restarted, started], default: restarted}
  stop_signal: {type: str, choices: [TERM, INT, QUIT, HUP], default: TERM}
  stop_timeout: {type: int, default: 20, description: seconds before SIGKILL}
  start_timeout: {type: int, default: 10, description: seconds for the new pid to appear}
"""

RETURN = r"""
old_pid: {type: int, description: the pid that was stopped (or would be), 0 if none}
new_pid: {type: int, description: the started pid (0 in check mode)}
refused: {type: str, description: why the pid file's pid was not signalled, if it was not}
"""


def read_pid(pidfile: str) -> int:
    try:
        with open(pidfile) as handle:
            text = handle.read(64).strip()
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return int(text) if text.isdigit() and 0 < int(text) < 2**22 else 0


def identity(pid: int) -> tuple[str, str] | None:
    """(resolved executable, cmdline with spaces) of a live, non-zombie pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return None
        exe = os.readlink(f"/proc/{pid}/exe")
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(65536)
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    except PermissionError:
        return ("?", "?")  # not ours to inspect: never a match
    exe = exe.removesuffix(" (deleted)")  # the binary was upgraded under a running process
    return exe, raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def matches(found: tuple[str, str] | None, executable: str, pattern: re.Pattern[str]) -> bool:
    return found is not None and found[0] == executable and bool(pattern.search(found[1]))


def others(executable: str, pattern: re.Pattern[str], skip: int) -> list[int]:
    """Other live processes with the expected identity (a second instance must not start)."""
    pids = []
    for name in os.listdir("/proc"):
        pid = int(name) if name.isdigit() else 0
        if pid and pid not in (skip, os.getpid()) and matches(identity(pid), executable, pattern):
            pids.append(pid)
    return pids


def exited(handle: int, timeout: float) -> bool:
    """Whether the process behind a pidfd ended within ``timeout`` (a pidfd becomes
    readable when its process exits: no polling of a pid that may be reused)."""
    readable, _, _ = select.select([handle], [], [], timeout)
    return bool(readable)


def start(module: AnsibleModule, args: dict, executable: str, pattern: re.Pattern[str]) -> int:
    """Start the argv detached; the pid of the new process (ours or the daemon's)."""
    old = read_pid(args["pidfile"])
    with open(args["log"], "ab") as log, open(os.devnull, "rb") as null:
        try:
            child = subprocess.Popen(  # argv from the inventory, no shell
                args["start"], stdin=null, stdout=log, stderr=subprocess.STDOUT,
                cwd=args["chdir"], start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            module.fail_json(msg=f"cannot start {args['start'][0]}: {exc}")
    if not args["daemonizes"]:
        tmp = f"{args['pidfile']}.mendloop-tmp"
        with open(tmp, "w") as handle:
            handle.write(f"{child.pid}\n")
        os.replace(tmp, args["pidfile"])
    else:
        try:
            forked = child.wait(timeout=args["start_timeout"])
        except subprocess.TimeoutExpired:
            module.fail_json(msg=f"{args['start'][0]} did not fork (daemonizes: true?)")
        if forked != 0:
            module.fail_json(msg=f"{args['start'][0]} exited with {forked} while forking")
    deadline = time.monotonic() + args["start_timeout"]
    while time.monotonic() < deadline:
        pid = read_pid(args["pidfile"]) if args["daemonizes"] else child.pid
        if pid and pid != old and matches(identity(pid), executable, pattern):
            time.sleep(0.5)  # one that dies at once (bad config, port taken) is no start
            if matches(identity(pid), executable, pattern):
                return pid
        if not args["daemonizes"] and child.poll() is not None:
            break
        time.sleep(0.1)
    module.fail_json(msg=f"{args['start'][0]} did not stay up (see {args['log']})")
    return 0


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pidfile": {"type": "path", "required": True},
            "executable": {"type": "path", "required": True},
            "cmdline": {"type": "str", "default": ""},
            "start": {"type": "list", "elements": "str", "required": True},
            "chdir": {"type": "path", "default": "/"},
            "log": {"type": "path", "default": "/dev/null"},
            "daemonizes": {"type": "bool", "default": False},
            "state": {"type": "str", "choices": ["restarted", "started"], "default": "restarted"},
            "stop_signal": {"type": "str", "choices": ["TERM", "INT", "QUIT", "HUP"],
                            "default": "TERM"},
            "stop_timeout": {"type": "int", "default": 20},
            "start_timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    args = module.params
    if not args["start"] or not os.path.isabs(args["start"][0]):
        module.fail_json(msg="start must be an argv whose first item is an absolute path")
    for name in ("pidfile", "executable", "log", "chdir"):
        if not os.path.isabs(args[name]):
            module.fail_json(msg=f"{name} must be an absolute path")
    executable = os.path.realpath(args["executable"])  # /usr/bin/redis-server is a symlink
    try:
        pattern = re.compile(args["cmdline"])
    except re.error as exc:
        module.fail_json(msg=f"cmdline is not a regex: {exc}")

    pid = read_pid(args["pidfile"])
    refused = ""
    handle = None
    if pid:
        try:
            handle = os.pidfd_open(pid)  # from here on the signal can reach only this process
        except ProcessLookupError:
            handle = None
    found = identity(pid) if handle is not None else None
    ours = handle is not None and matches(found, executable, pattern)
    if handle is not None and not ours:
        if found is not None:
            refused = f"pid {pid} is {found[0]} ({found[1][:120]}), not {executable}: not signalled"
        os.close(handle)
        handle = None
    if not ours:
        running = others(executable, pattern, pid)
        if running:
            module.fail_json(
                msg=f"the pid file says {pid or 'nothing'} but {executable} runs as "
                f"{running}: refusing to guess which to restart or to start another",
                refused=refused,
            )
    result = {"old_pid": pid if ours else 0, "new_pid": 0, "refused": refused}
    if ours and args["state"] == "started":
        os.close(handle)
        module.exit_json(changed=False, msg=f"pid {pid} runs", **result)
    if module.check_mode:
        if handle is not None:
            os.close(handle)
        what = f"stop pid {pid} and start" if ours else "start"
        said = f"would {what} {args['start'][0]}"
        module.exit_json(changed=True, msg=f"{said}; {refused}" if refused else said, **result)
    if handle is not None:
        try:
            signal.pidfd_send_signal(handle, getattr(signal, "SIG" + args["stop_signal"]))
            # a hung process may be stopped (SIGSTOP, a debugger): let it take the signal
            signal.pidfd_send_signal(handle, signal.SIGCONT)
            if not exited(handle, args["stop_timeout"]):
                signal.pidfd_send_signal(handle, signal.SIGKILL)
            stopped = exited(handle, 10)
        except ProcessLookupError:
            stopped = True  # it ended by itself meanwhile
        finally:
            os.close(handle)
        if not stopped:
            module.fail_json(msg=f"pid {pid} did not stop, even after SIGKILL", **result)
    result["new_pid"] = start(module, args, executable, pattern)
    said = f"started {args['start'][0]} as {result['new_pid']}"
    module.exit_json(changed=True, msg=f"{said}; {refused}" if refused else said, **result)


if __name__ == "__main__":
    main()
