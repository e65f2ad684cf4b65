#!/usr/bin/python
"""Ansible module: free disk space by deleting old files, only under allow-listed paths.

    - mendloop_clean:
        allowed: [/var/log/app, /var/tmp/app]   # the inventory's allow list
        path: ""                      # one dir under them ("": every allowed root)
        mountpoint: /                 # only roots on this file system ("": any)
        patterns: ["*.log.*", "*.tmp"]
        older_than: 86400             # seconds since the last modification
        min_size: 0                   # bytes; smaller files are kept
        max_files: 1000               # at most this many per run, oldest first

The mountpoint typically comes from the finding (node_exporter's ``mountpoint`` label of the
file system that fills up): the roots that live on that file system are cleaned, others not.
Safety, in order: ``path`` (each root when it is empty) must be absolute, without ``..``,
and, once every symlink in it is resolved, equal to or under a resolved allowed root (never
``/``); the walk is ``os.fwalk`` without following symlinks, each directory held open by
fd, each file ``lstat``-ed and removed with ``unlink(dir_fd=...)``, so a directory swapped
for a symlink during the run cannot send a deletion elsewhere; symlinks, other file types and other
file systems (mounts below the path) are never touched. Check mode lists what would go.
No rollback: what is deleted is gone (hence old rotated files and temp files only).
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mendloop_clean
short_description: Delete old files under an allow-listed directory, symlink-safe.
options:
  allowed: {type: list, elements: str, required: true}
  path: {type: str, default: ""}
  mountpoint: {type: str, default: ""}
  patterns: {type: list, elements: str, required: true}
  older_than: {type: int, default: 86400}
  min_size: {type: int, default: 0}
  max_files: {type: int, default: 1000}
"""

RETURN = r"""
files: {type: int, description: files deleted (or that would be)}
bytes: {type: int, description: bytes freed (or that would be)}
paths: {type: list, description: per cleaned dir, its files, bytes and the first 200 names}
"""

MAX_LISTED = 200


def confined(path: str, allowed: list[str]) -> tuple[str, str]:
    """(resolved path, resolved root it lies in), or ValueError saying why it may not."""
    if not os.path.isabs(path) or "\0" in path:
        raise ValueError(f"{path!r} is not an absolute path")
    if ".." in path.split("/"):
        raise ValueError(f"{path!r} contains '..'")
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise ValueError(f"{path!r} is not a directory")
    for root in allowed:
        if not os.path.isabs(root) or ".." in root.split("/"):
            raise ValueError(f"allowed root {root!r} is not an absolute path without '..'")
        resolved = os.path.realpath(root)
        if resolved != os.path.normpath(root):  # e.g. /tmp/app swapped for a link to /etc
            raise ValueError(f"allowed root {root!r} goes through a symlink (to {resolved})")
        if resolved == "/":
            raise ValueError("'/' may not be an allowed root")
        if real == resolved or real.startswith(resolved + "/"):
            return real, resolved
    raise ValueError(f"{path!r} (resolved {real}) is under no allowed root {allowed}")


def confined_mount(mountpoint: str) -> str:
    """A mountpoint as a finding names it: an absolute path without '..' that exists."""
    if not os.path.isabs(mountpoint) or "\0" in mountpoint or ".." in mountpoint.split("/"):
        raise ValueError(f"mountpoint {mountpoint!r} is not an absolute path without '..'")
    return mountpoint


def candidates(real: str, args: dict, now: float) -> list[tuple[float, str, int]]:
    """(mtime, relative path, size) of every file the rules select, oldest first."""
    found = []
    top_dev = os.stat(real).st_dev
    for dirpath, dirnames, filenames, dirfd in os.fwalk(real, follow_symlinks=False):
        keep = []
        for name in dirnames:  # never into another file system mounted below
            info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode) and info.st_dev == top_dev:
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            if not any(fnmatch.fnmatchcase(name, p) for p in args["patterns"]):
                continue
            info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_dev != top_dev:
                continue  # symlinks, sockets, fifos, devices: never
            if now - info.st_mtime < args["older_than"] or info.st_size < args["min_size"]:
                continue
            found.append((info.st_mtime, os.path.relpath(os.path.join(dirpath, name), real),
                          info.st_size))
    return sorted(found)[: args["max_files"]]


def remove(real: str, chosen: set[str]) -> list[tuple[str, int]]:
    """Unlink the chosen files, each through its directory's fd, re-checked just before."""
    done = []
    for dirpath, _dirs, filenames, dirfd in os.fwalk(real, follow_symlinks=False):
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), real)
            if rel not in chosen:
                continue
            info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                os.unlink(name, dir_fd=dirfd)
                done.append((rel, info.st_size))
    return done


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "allowed": {"type": "list", "elements": "str", "required": True},
            "path": {"type": "str", "default": ""},
            "mountpoint": {"type": "str", "default": ""},
            "patterns": {"type": "list", "elements": "str", "required": True},
            "older_than": {"type": "int", "default": 86400},
            "min_size": {"type": "int", "default": 0},
            "max_files": {"type": "int", "default": 1000},
        },
        supports_check_mode=True,
    )
    args = module.params
    if not args["patterns"] or any(not p or "/" in p for p in args["patterns"]):
        module.fail_json(msg="patterns must be non-empty file name globs (no '/')")
    if args["older_than"] < 0 or args["min_size"] < 0 or args["max_files"] < 1:
        module.fail_json(msg="older_than and min_size must be >= 0, max_files >= 1")
    if not args["allowed"]:
        module.fail_json(msg="no allowed roots: list them in the inventory")
    try:
        paths = [confined(p, args["allowed"]) for p in ([args["path"]] if args["path"]
                                                       else args["allowed"])]
        if args["mountpoint"]:
            device = os.stat(confined_mount(args["mountpoint"])).st_dev
            paths = [(real, root) for real, root in paths if os.stat(real).st_dev == device]
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"refused: {exc}")
    now, report = time.time(), []
    for real, root in paths:
        chosen = candidates(real, args, now)
        if module.check_mode:
            listed = [(rel, size) for _, rel, size in chosen]
        else:
            listed = remove(real, {rel for _, rel, _ in chosen})
        report.append({"path": real, "root": root, "files": len(listed),
                       "bytes": sum(size for _, size in listed),
                       "deleted": [rel for rel, _ in listed][:MAX_LISTED]})
    files = sum(r["files"] for r in report)
    module.exit_json(changed=files > 0, files=files, bytes=sum(r["bytes"] for r in report),
                     paths=report)

if __name__ == "__main__":
    main()
