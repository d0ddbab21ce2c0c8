"""The program's own root filesystem: a small read-only tmpfs holding only what running Python needs.

The host's tree is replaced (pivot_root, in a mount namespace of the program's own) by: read-only binds of the
interpreter, its standard library and the shared-library directories, with the symlinks on the way to them
recreated; /dev/null and /dev/urandom; and the sample's writable working directory. Home directories, /etc,
/proc, other runs and the repository are not there to be read, listed or even stat()ed, and every directory
on the way is world-traversable, so an unprivileged uid can run an interpreter that lives under a root-only
directory such as ~root/.pyenv. Landlock's read rules (kernel.landlock) confine the same paths a second time.
"""
from __future__ import annotations

import errno
import os

from lorabench.eval.sandbox import kernel as k

_STATVFS_TO_MOUNT = ((os.ST_NOEXEC, k.MS_NOEXEC), (os.ST_NOATIME, k.MS_NOATIME),
                     (os.ST_NODIRATIME, k.MS_NODIRATIME), (os.ST_RELATIME, k.MS_RELATIME))


def pivot(root: str, workdir: str, readable: list[str], devices: list[str]) -> None:
    """Build the tree at `root` (an empty directory) and make it this process's root; cwd ends at '/'."""
    k.unshare(k.CLONE_NEWNS)   # the init keeps the host's view (and its /proc)
    k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
    k.mount("tmpfs", root, "tmpfs", k.MS_NOSUID | k.MS_NODEV, "size=1m,nr_inodes=1024,mode=0755")
    bound: list[str] = []
    for path in sorted(readable):   # a parent before what lies beneath it
        _mirror(root, path, bound, readonly=True)
    for path in devices + [workdir]:
        _mirror(root, path, bound, readonly=False)
    k.mount(None, root, None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV)
    os.chdir(root)
    k.pivot_root(".", ".")          # the old root ends up stacked on the new one ...
    k.umount(".", k.MNT_DETACH)     # ... and is detached from it
    os.chdir("/")


def _mirror(root: str, path: str, bound: list[str], readonly: bool, depth: int = 0) -> None:
    """Make `path` resolve under `root` as it does on the host: symlinks on the way recreated, directories
    made, the path itself bind-mounted (read-only unless told otherwise)."""
    if depth > 16:
        raise OSError(errno.ELOOP, f"too many symlinks on the way to {path}")
    if not os.path.exists(path):
        return
    parts = [p for p in path.split("/") if p]
    cur = ""
    for i, name in enumerate(parts):
        cur = f"{cur}/{name}"
        if any(cur == b or cur.startswith(b + "/") for b in bound):
            return   # already visible beneath a bind
        if os.path.islink(cur):
            target = os.readlink(cur)
            if not os.path.lexists(root + cur):
                os.symlink(target, root + cur)
            rest = "/".join(parts[i + 1:])
            resolved = os.path.normpath(os.path.join(os.path.dirname(cur), target, rest))
            _mirror(root, resolved, bound, readonly, depth + 1)
            return
        if i < len(parts) - 1 or os.path.isdir(cur):
            if not os.path.isdir(root + cur):
                os.mkdir(root + cur, 0o755)
        elif not os.path.lexists(root + cur):
            os.close(os.open(root + cur, os.O_WRONLY | os.O_CREAT, 0o644))   # a mount point for a file
    k.mount(cur, root + cur, None, k.MS_BIND | k.MS_REC)
    if readonly:
        flags = k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV
        have = os.statvfs(cur).f_flag   # a user namespace may not drop the flags the host mount has
        for st, ms in _STATVFS_TO_MOUNT:
            if have & st:
                flags |= ms
        k.mount(None, root + cur, None, flags)
    bound.append(cur)
