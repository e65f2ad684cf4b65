#!/usr/bin/python
"""Ansible module: rotate the logs of one allow-listed directory (copy, then truncate).

    - mendloop_rotate:
        allowed: [/var/log/app]          # the inventory's allow list (as mendloop_clean)
        path: ""                         # one dir under them ("": every allowed root)
        patterns: ["*.log"]
        min_size: 1048576                # bytes; smaller logs are left alone
        keep: 5                          # rotated copies kept per log, the oldest removed
        compress: true                   # copies as <name>.<UTC stamp>.gz

Each selected log is copied (gzip when ``compress``) to ``<name>.<YYYYmmddTHHMMSS>`` in the
same directory, then truncated in place, so a writer keeps its open file (the copytruncate
method of logrotate; what is written between copy and truncate is lost, as there). Only
regular files directly in the directory are rotated: no recursion, no symlink followed (each
file opened with O_NOFOLLOW through the directory's fd). Check mode lists what would be
rotated and removed. No rollback: the content is kept in the copies.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
import shutil
import stat
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mendloop_rotate
short_description: Copy-and-truncate rotation of large logs in an allow-listed directory.
options:
  allowed: {type: list, elements: str, required: true}
  path: {type: str, default: ""}
  patterns: {type: list, elements: str, required: true}
  min_size: {type: int, default: 1048576}
  keep: {type: int, default: 5}
  compress: {type: bool, default: true}
"""

STAMP = re.compile(r"\.\d{8}T\d{6}(\.gz)?$")


def confined(path: str, allowed: list[str]) -> str:
    """The resolved directory when it is an allowed root or under one; ValueError if not."""
    if not os.path.isabs(path) or "\0" in path or ".." in path.split("/"):
        raise ValueError(f"{path!r} is not an absolute path without '..'")
    real = os.path.realpath(path)
    for root in allowed:
        if not os.path.isabs(root) or ".." in root.split("/"):
            raise ValueError(f"allowed root {root!r} is not an absolute path without '..'")
        resolved = os.path.realpath(root)
        if resolved != os.path.normpath(root):  # e.g. /tmp/app swapped for a link to /etc
            raise ValueError(f"allowed root {root!r} goes through a symlink (to {resolved})")
        if resolved != "/" and (real == resolved or real.startswith(resolved + "/")):
            if not os.path.isdir(real):
                raise ValueError(f"{path!r} is not a directory")
            return real
    raise ValueError(f"{path!r} (resolved {real}) is under no allowed root {allowed}")


def plan(dirfd: int, args: dict) -> tuple[list[str], list[str]]:
    """(logs to rotate, old rotated copies to remove once the new ones exist)."""
    names = sorted(os.listdir(dirfd))
    logs = []
    for name in names:
        if STAMP.search(name) or not any(fnmatch.fnmatchcase(name, p) for p in args["patterns"]):
            continue
        info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if stat.S_ISREG(info.st_mode) and info.st_size >= max(args["min_size"], 1):
            logs.append(name)
    drop = []
    for log in logs:  # the new copy counts as one of ``keep``
        copies = sorted(n for n in names if n.startswith(log + ".") and STAMP.search(n))
        excess = len(copies) + 1 - args["keep"]
        drop += copies[: max(excess, 0)]
    return logs, drop


def rotate(dirfd: int, name: str, stamp: str, compress: bool) -> str:
    """Copy ``name`` aside and truncate it in place; the copy's name."""
    copy = f"{name}.{stamp}" + (".gz" if compress else "")
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    source = os.open(name, os.O_RDWR | flags, dir_fd=dirfd)
    target = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, 0o640, dir_fd=dirfd)
    with os.fdopen(source, "r+b") as src, os.fdopen(target, "wb") as raw:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise ValueError(f"{name} is not a regular file")
        if compress:
            with gzip.GzipFile(filename=name, mode="wb", fileobj=raw) as out:
                shutil.copyfileobj(src, out, 1 << 20)
        else:
            shutil.copyfileobj(src, raw, 1 << 20)
        src.truncate(0)
    return copy


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "allowed": {"type": "list", "elements": "str", "required": True},
            "path": {"type": "str", "default": ""},
            "patterns": {"type": "list", "elements": "str", "required": True},
            "min_size": {"type": "int", "default": 1048576},
            "keep": {"type": "int", "default": 5},
            "compress": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    args = module.params
    if not args["patterns"] or any(not p or "/" in p for p in args["patterns"]):
        module.fail_json(msg="patterns must be non-empty file name globs (no '/')")
    if args["keep"] < 1 or args["min_size"] < 0:
        module.fail_json(msg="keep must be >= 1 and min_size >= 0")
    try:
        dirs = [confined(p, args["allowed"]) for p in ([args["path"]] if args["path"]
                                                      else args["allowed"])]
    except ValueError as exc:
        module.fail_json(msg=f"refused: {exc}")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    report = []
    for real in dict.fromkeys(dirs):
        dirfd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            logs, drop = plan(dirfd, args)
            copies = []
            if not module.check_mode:
                copies = [rotate(dirfd, name, stamp, args["compress"]) for name in logs]
                for name in drop:
                    os.unlink(name, dir_fd=dirfd)
        except (OSError, ValueError) as exc:
            module.fail_json(msg=f"rotation in {real} failed: {exc}", done=report)
        finally:
            os.close(dirfd)
        report.append({"path": real, "rotated": logs, "copies": copies, "removed": drop})
    rotated = sum(len(r["rotated"]) for r in report)
    module.exit_json(changed=rotated > 0, rotated=rotated, paths=report)

if __name__ == "__main__":
    main()
