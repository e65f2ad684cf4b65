#!/usr/bin/python
"""Ansible module: keep nginx's last good config, roll back to it, validated, then reload.

    - mendloop_nginx_config:
        action: snapshot              # validate | snapshot | rollback | restore
        binary: /usr/sbin/nginx
        conf: /etc/nginx/nginx.conf   # the main file; `nginx -t -c` checks it
        conf_dir: /etc/nginx          # the tree that is kept and restored (default: conf's dir)
        state_dir: /var/lib/mendloop/nginx   # where the kept copies live (outside conf_dir)
        pidfile: /run/nginx.pid       # the master, to reload (identity checked as below)
        cmdline: 'master process .*-c /etc/nginx/nginx\\.conf'
        name: ""                      # restore: a copy named by an earlier rollback

Why: a deploy that passes ``nginx -t`` can still break the service (a location proxied to the
wrong place). ``snapshot`` keeps the current tree as *good* (only if ``nginx -t`` accepts it;
the site runs it after a deploy it trusts, e.g. the pack's nginx_config_snapshot.yml).
``rollback`` keeps the current tree aside as *rejected-...*, installs the last good one,
runs ``nginx -t`` (a failure puts the rejected tree back and fails), then reloads the master
(SIGHUP through a pidfd after /proc says it is ``binary`` with ``cmdline``, as linux-host's
mendloop_process does) and waits for new workers. ``restore`` installs a named copy the same
way (the rollback of a rollback). Files are replaced one by one with ``os.replace``, never
following a symlink of the tree; a symlink is kept as a symlink. Check mode says which files
would change and changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mendloop_nginx_config
short_description: Keep, validate and roll back nginx's config; reload the master safely.
options:
  action: {type: str, required: true, choices: [validate, snapshot, rollback, restore]}
  binary: {type: path, default: /usr/sbin/nginx}
  conf: {type: path, required: true}
  conf_dir: {type: path, default: "", description: default the directory of conf}
  state_dir: {type: path, required: true}
  pidfile: {type: path, default: ""}
  cmdline: {type: str, default: "master process"}
  name: {type: str, default: ""}
  keep: {type: int, default: 5, description: copies of each kind kept}
  reload_timeout: {type: int, default: 15}
"""

RETURN = r"""
changed_files: {type: list, description: files that differ (relative to conf_dir)}
rejected: {type: str, description: the name the replaced tree was kept under}
reloaded: {type: bool, description: the master took the new config (new workers)}
"""

NAME = re.compile(r"(good|rejected)-\d{8}T\d{6}-[0-9a-f]{6}")
LAST_GOOD = "last-good"


def validate(binary: str, conf: str) -> str:
    """``nginx -t`` of ``conf``: "" when it passes, else what nginx said."""
    try:
        out = subprocess.run(
            [binary, "-t", "-q", "-e", "stderr", "-c", conf],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nginx -t did not run: {exc}"
    return "" if out.returncode == 0 else (out.stderr or out.stdout).strip()[-2000:]


def manifest(root: str) -> dict[str, str]:
    """relative path -> sha256 of a file or 'link:<target>' of a symlink (never followed)."""
    found: dict[str, str] = {}
    for top, dirs, files, top_fd in os.fwalk(root, follow_symlinks=False):
        rel_top = os.path.relpath(top, root)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            rel = os.path.normpath(os.path.join(rel_top, name))
            st = os.lstat(name, dir_fd=top_fd)
            if os.path.islink(os.path.join(top, name)):
                found[rel] = "link:" + os.readlink(name, dir_fd=top_fd)
            elif st.st_mode & 0o170000 == 0o100000:  # regular files only
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=top_fd)
                with os.fdopen(fd, "rb") as handle:
                    found[rel] = hashlib.sha256(handle.read()).hexdigest()
    return found


def copy_tree(src: str, dest: str) -> None:
    shutil.copytree(src, dest, symlinks=True)


def install(src: str, conf_dir: str) -> None:
    """Make conf_dir hold exactly src's files: each replaced atomically, extras removed."""
    wanted = manifest(src)
    for rel in sorted(set(manifest(conf_dir)) - set(wanted)):
        os.unlink(os.path.join(conf_dir, rel))
    for rel, digest in sorted(wanted.items()):
        target = os.path.join(conf_dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.mendloop-{secrets.token_hex(4)}"
        if digest.startswith("link:"):
            os.symlink(digest[5:], tmp)
        else:
            shutil.copy2(os.path.join(src, rel), tmp, follow_symlinks=False)
        os.replace(tmp, target)


def kept(state_dir: str, kind: str, keep: int) -> str:
    """A new copy's path (``kind``-<utc>-<hex>); older copies of that kind beyond keep go."""
    names = sorted(n for n in os.listdir(state_dir) if NAME.fullmatch(n) and n.startswith(kind))
    for name in names[: max(0, len(names) - keep + 1)]:
        if os.path.realpath(os.path.join(state_dir, LAST_GOOD)) != os.path.join(state_dir, name):
            shutil.rmtree(os.path.join(state_dir, name), ignore_errors=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return os.path.join(state_dir, f"{kind}-{stamp}-{secrets.token_hex(3)}")


def children(pid: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if name.isdigit() and len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
            found.add(int(name))
    return found


def open_master(args: dict, binary: str) -> tuple[int, int, str]:
    """(pid, pidfd, "") of the running master if /proc says it is ``binary`` with
    ``cmdline``; (0, -1, "") when none runs; (pid, -1, why) when the pid file names another
    program (then nothing may be touched). The pidfd keeps the signal on this process."""
    try:
        with open(args["pidfile"]) as handle:
            text = handle.read(64).strip()
    except OSError:
        return 0, -1, ""
    pid = int(text) if text.isdigit() else 0
    try:
        fd = os.pidfd_open(pid) if pid > 0 else -1
    except ProcessLookupError:
        fd = -1
    if fd < 0:
        return 0, -1, ""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            cmd = raw.read(65536).rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        os.close(fd)
        return 0, -1, ""  # it ended meanwhile
    if exe != binary or not re.search(args["cmdline"], cmd):
        os.close(fd)
        return pid, -1, f"pid {pid} is {exe} ({cmd[:120]}), not the nginx master: not touched"
    return pid, fd, ""


def reload_master(pid: int, fd: int, timeout: int) -> tuple[bool, str]:
    """SIGHUP the master through its pidfd; wait for a worker it did not have before."""
    try:
        before = children(pid)
        signal.pidfd_send_signal(fd, signal.SIGHUP)
    except (OSError, ProcessLookupError) as exc:
        return False, f"pid {pid}: {exc}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children(pid) - before:
            return True, f"reloaded pid {pid}"
        time.sleep(0.1)
    return False, f"pid {pid} started no new worker within {timeout} s"


def switch(
    module: AnsibleModule, args: dict, source: str, binary: str, result: dict, master: tuple
) -> None:
    """Keep the current tree as rejected, install ``source``, validate, reload."""
    conf_dir, state_dir = args["conf_dir"], args["state_dir"]
    rejected = kept(state_dir, "rejected", args["keep"])
    copy_tree(conf_dir, rejected)
    result["rejected"] = os.path.basename(rejected)
    install(source, conf_dir)
    problem = validate(binary, args["conf"])
    if problem:
        install(rejected, conf_dir)
        module.fail_json(msg=f"{source} fails nginx -t, the tree is put back: {problem}", **result)
    pid, fd, _ = master
    if fd < 0:
        result["msg"] = (
            f"installed {os.path.basename(source)}; nginx does not run: the "
            "config takes effect at its start"
        )
        return
    result["reloaded"], said = reload_master(pid, fd, args["reload_timeout"])
    result["msg"] = f"installed {os.path.basename(source)}; {said}"
    if not result["reloaded"]:
        module.fail_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {
                "type": "str",
                "required": True,
                "choices": ["validate", "snapshot", "rollback", "restore"],
            },
            "binary": {"type": "path", "default": "/usr/sbin/nginx"},
            "conf": {"type": "path", "required": True},
            "conf_dir": {"type": "path", "default": ""},
            "state_dir": {"type": "path", "required": True},
            "pidfile": {"type": "path", "default": ""},
            "cmdline": {"type": "str", "default": "master process"},
            "name": {"type": "str", "default": ""},
            "keep": {"type": "int", "default": 5},
            "reload_timeout": {"type": "int", "default": 15},
        },
        supports_check_mode=True,
    )
    args = module.params
    args["conf_dir"] = args["conf_dir"] or os.path.dirname(args["conf"])
    for key in ("binary", "conf", "conf_dir", "state_dir"):
        if not os.path.isabs(args[key]):
            module.fail_json(msg=f"{key} must be an absolute path")
    binary = os.path.realpath(args["binary"])
    conf_dir = os.path.realpath(args["conf_dir"])
    state_dir = os.path.realpath(args["state_dir"])
    if state_dir == conf_dir or state_dir.startswith(conf_dir + os.sep):
        module.fail_json(msg="state_dir must be outside conf_dir (it would be kept in itself)")
    args["conf_dir"], args["state_dir"] = conf_dir, state_dir
    try:
        re.compile(args["cmdline"])
    except re.error as exc:
        module.fail_json(msg=f"cmdline is not a regex: {exc}")
    result: dict = {"changed_files": [], "rejected": "", "reloaded": False}

    problem = validate(binary, args["conf"])
    if args["action"] == "validate":
        if problem:
            module.fail_json(msg=f"nginx -t refuses {args['conf']}: {problem}", **result)
        module.exit_json(changed=False, msg="nginx -t passes", **result)

    last = os.path.join(state_dir, LAST_GOOD)
    current = manifest(conf_dir)
    if args["action"] == "snapshot":
        if problem:
            module.fail_json(msg=f"not kept as good, nginx -t refuses it: {problem}", **result)
        good = manifest(os.path.realpath(last)) if os.path.isdir(last) else None
        if good == current:
            module.exit_json(changed=False, msg="the last good copy is the current tree", **result)
        result["changed_files"] = sorted(set(current.items()) ^ set((good or {}).items()))
        if not module.check_mode:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            copy = kept(state_dir, "good", args["keep"])
            copy_tree(conf_dir, copy)
            link = f"{last}.mendloop-{secrets.token_hex(4)}"
            os.symlink(os.path.basename(copy), link)
            os.replace(link, last)  # the last good copy changes in one step
            result["msg"] = f"kept as {os.path.basename(copy)}"
        module.exit_json(changed=True, **result)

    if args["action"] == "rollback":
        if not os.path.isdir(last):
            module.fail_json(msg=f"no last good config in {state_dir}: nothing to roll back to")
        source = os.path.realpath(last)
    else:
        if not NAME.fullmatch(args["name"]) or not os.path.isdir(
            os.path.join(state_dir, args["name"])
        ):
            module.fail_json(msg=f"no kept config named {args['name']!r} in {state_dir}")
        source = os.path.join(state_dir, args["name"])
    wanted = manifest(source)
    result["changed_files"] = sorted(
        {rel for rel in set(current) | set(wanted) if current.get(rel) != wanted.get(rel)}
    )
    if not result["changed_files"]:
        module.fail_json(msg=f"the config already is {os.path.basename(source)}", **result)
    master = open_master(args, binary) if args["pidfile"] else (0, -1, "")
    if master[2]:  # the pid file names another program: touch neither the tree nor it
        module.fail_json(msg=master[2], **result)
    try:
        if module.check_mode:
            said = f"would install {os.path.basename(source)}"
            module.exit_json(changed=True, msg=said, **result)
        switch(module, args, source, binary, result, master)
    finally:
        if master[1] >= 0:
            os.close(master[1])
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
