"""Thin ctypes wrappers for the kernel features the sandbox uses: prctl, mounts, Landlock, seccomp, capabilities.

Stdlib only: imported by the launcher process (`python -I -S`), never by the sandboxed program.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = \
    0x00020000, 0x08000000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 8, 32, 4096, 0x4000, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 1, 4, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_SECCOMP = 38, 47, 4, 22
SECBITS = 0x01 | 0x02 | 0x20 | 0x40 | 0x80   # NOROOT(+LOCKED), KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE(+LOCKED)
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def prctl(option: int, arg2=0, arg3=0) -> int:
    return check(libc().prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                              ctypes.c_ulong(0)), f"prctl({option})")


def unshare(flags: int) -> None:
    check(libc().unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    check(libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          f"mount({source}, {target})")


def umount(target: str, flags: int = 0) -> None:
    check(libc().umount2(target.encode(), flags), f"umount({target})")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {platform.machine()}")
    check(libc().syscall(ctypes.c_long(nr), new_root.encode(), put_old.encode()), "pivot_root")


def drop_capabilities() -> bool:
    """Empty bounding and ambient sets, and no capabilities for uid 0 on exec (SECBIT_NOROOT)."""
    try:
        for cap in range(64):
            try:
                prctl(PR_CAPBSET_DROP, cap)
            except OSError as e:
                if e.errno != errno.EINVAL or cap == 0:
                    raise
                break   # past the kernel's last capability (no /proc here to ask for cap_last_cap)
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        prctl(PR_SET_SECUREBITS, SECBITS)
    except OSError:
        return False
    return True


# Landlock (Linux >= 5.13): syscalls 444-446 on every architecture. (ABI, right) pairs.
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR, LL_TRUNCATE = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 14
_LL_FS = [(1, LL_EXECUTE), (1, LL_WRITE_FILE), (1, LL_READ_FILE), (1, LL_READ_DIR), (1, 1 << 4), (1, 1 << 5),
          (1, 1 << 6), (1, 1 << 7), (1, 1 << 8), (1, 1 << 9), (1, 1 << 10), (1, 1 << 11), (1, 1 << 12),
          (2, 1 << 13), (3, LL_TRUNCATE), (5, 1 << 15)]
# EXECUTE, WRITE_FILE, READ_FILE, READ_DIR, REMOVE_DIR, REMOVE_FILE, MAKE_CHAR/DIR/REG/SOCK/FIFO/BLOCK/SYM,
# REFER, TRUNCATE, IOCTL_DEV: every filesystem right is handled, so whatever no rule grants is refused.
_LL_FILE_RIGHTS = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | (1 << 15)   # those a file can carry


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock(workdir: str, readable: list[str], devices: dict[str, str]) -> dict:
    """Everything the program may touch: read+execute beneath `readable`, everything inside `workdir`, and
    `devices` ({path: 'r' | 'rw'}). TCP bind/connect and signals/abstract sockets outside are refused too."""
    lib = libc()
    out = {"landlock_abi": 0, "landlock_fs": False, "landlock_net": False, "landlock_scope": False}
    abi = lib.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return out
    fs = 0
    for need, right in _LL_FS:
        if abi >= need:
            fs |= right
    attr = _RulesetAttr(fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)   # TCP bind+connect; signals+abstract unix
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = check(lib.syscall(ctypes.c_long(444), ctypes.byref(attr), ctypes.c_size_t(size),
                                ctypes.c_uint32(0)), "landlock_create_ruleset")
    read = LL_READ_FILE | LL_EXECUTE | LL_READ_DIR
    rules = [(path, read) for path in readable if os.path.exists(path)] + [(workdir, fs & ~LL_EXECUTE)]
    rules += [(path, LL_READ_FILE | (LL_WRITE_FILE | LL_TRUNCATE if mode == "rw" else 0))
              for path, mode in devices.items() if os.path.exists(path)]
    try:
        for path, rights in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                if not os.path.isdir(path):
                    rights &= _LL_FILE_RIGHTS
                rule = _PathBeneath(rights & fs, fd)
                check(lib.syscall(ctypes.c_long(445), ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                                  ctypes.c_uint32(0)), f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        check(lib.syscall(ctypes.c_long(446), ctypes.c_int(ruleset), ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return {"landlock_abi": abi, "landlock_fs": True, "landlock_net": abi >= 4, "landlock_scope": abi >= 6}


# Syscall numbers per architecture. Landlock does not cover metadata changes, and the program still owns
# whatever its uid owns (uid 0 in a user namespace owns the system's root-owned files): chmod, utimes, xattrs
# (ACLs) and inode flags are refused outright, inside the working directory too. So are ptrace and reading or
# stealing from another process of the sample (a fresh interpreter it forks could otherwise read the
# harness's token out of its parent).
_SECCOMP_ARCH = {
    "x86_64": {"audit": 0xC000003E, "socket": 41, "ioctl": 16,
               "deny": [425,                                 # io_uring_setup (io_uring can open sockets)
                        90, 91, 268, 452,                    # chmod fchmod fchmodat fchmodat2
                        132, 235, 261, 280,                  # utime utimes futimesat utimensat
                        188, 189, 190, 463, 197, 198, 199, 466,   # [lf]setxattr(at) [lf]removexattr(at)
                        101, 310, 311, 438]},                # ptrace process_vm_readv/writev pidfd_getfd
    "aarch64": {"audit": 0xC00000B7, "socket": 198, "ioctl": 29,
                "deny": [425, 52, 53, 452, 88, 5, 6, 7, 463, 14, 15, 16, 466, 117, 270, 271, 438]},
}
_FS_IOC_SETFLAGS = (0x40086602, 0x40046602, 0x401C5820)   # FS_IOC_SETFLAGS, its 32-bit form, FS_IOC_FSSETXATTR


def seccomp_program(arch: dict) -> list[tuple[int, int, int, int]]:
    """A classic-BPF filter: foreign ABIs (i386, x32) and the calls above -> EPERM; socket(AF_UNIX) -> EACCES."""
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, eperm, eacces = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 13
    # (code, jump-if-true label, jump-if-false label, k); labels resolve to relative offsets below
    prog = [(ld, None, None, 4), (jeq, None, "deny", arch["audit"]), (ld, None, None, 0),
            (jge, "deny", None, 0x40000000)]
    prog += [(jeq, "deny", None, nr) for nr in arch["deny"]]
    prog += [(jeq, "socket", None, arch["socket"]), (jeq, "ioctl", None, arch["ioctl"]), (ret, None, None, allow),
             "socket", (ld, None, None, 16), (jeq, "unix", None, 1), (ret, None, None, allow),
             "unix", (ret, None, None, eacces),
             "ioctl", (ld, None, None, 24)]
    prog += [(jeq, "deny", None, cmd) for cmd in _FS_IOC_SETFLAGS]
    prog += [(ret, None, None, allow), "deny", (ret, None, None, eperm)]
    labels, code = {}, []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    return [(op, labels[jt] - i - 1 if jt else 0, labels[jf] - i - 1 if jf else 0, k)
            for i, (op, jt, jf, k) in enumerate(code)]


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp() -> bool:
    arch = _SECCOMP_ARCH.get(platform.machine())
    if arch is None:
        return False
    prog = seccomp_program(arch)
    filters = (_SockFilter * len(prog))(*[_SockFilter(*p) for p in prog])
    fprog = _SockFprog(len(prog), filters)
    try:
        check(libc().prctl(PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog), ctypes.c_ulong(0),
                           ctypes.c_ulong(0)), "seccomp")
    except OSError:
        return False
    return True
