"""Run untrusted, model-generated Python programs (HumanEval/MBPP samples) and say whether each passed.

bigcode-evaluation-harness (execute.py) runs samples in a `multiprocessing` child whose `reliability_guard()`
nulls a few functions (os.kill, shutil.rmtree, ...); its docstring warns it "is NOT a security sandbox": the
program keeps the evaluator's user, network, files and processes and can undo the guard with one import.
Here every limit is enforced by the kernel from outside the program, which runs in a fresh interpreter
(`python -I -B`) as the third process of launcher -> init -> program.

Protected against (each pinned by tests/test_sandbox.py):
- runaway time: a wall-clock limit kept by the launcher (it kills the namespace's init), plus RLIMIT_CPU;
- memory bombs: RLIMIT_AS = memory_mb per process;
- fork bombs: RLIMIT_NPROC, counted per sample (a user namespace or a uid of its own), and -- since the kernel
  exempts uid 0 from it -- the init counting the namespace's processes and killing them all above NPROC;
- fd exhaustion and huge files: RLIMIT_NOFILE, RLIMIT_FSIZE; huge output: stdout goes to /dev/null, stderr to
  an FSIZE-capped file of which only the tail is read;
- the network: a new network namespace (loopback down: connect/sendto fail); Landlock (ABI >= 4) refuses every
  TCP bind/connect; seccomp refuses AF_UNIX sockets (a pathname socket such as docker.sock is reachable from
  any network namespace) and io_uring (which could open sockets past seccomp);
- the filesystem: Landlock lets the program create, write, rename or delete only inside its working directory
  (a private 64 MiB tmpfs in a mount namespace, discarded with it) and write /dev/null; seccomp refuses chmod,
  utime, xattrs/ACLs and inode flags, which Landlock does not cover (also inside the workdir). Reads stay
  allowed (stdlib, site-packages);
- the evaluator and other processes: a new PID namespace and a private /proc (kill(-1), kill(getppid()), a
  host pid reach nothing outside), its own session, Landlock's signal/ptrace scoping, an IPC namespace; no
  capabilities (no_new_privs, empty bounding set, SECBIT_NOROOT), and when root with an interpreter that an
  unprivileged uid can run, a uid of its own per sample (then root-owned files are protected twice);
- leftovers: when the program ends the init exits, and the kernel kills every process left in the namespace;
  execute() returns only after that, and removes the working directory.

Not protected against: reading what the evaluator's uid can read (as root with the interpreter in a root-only
directory such as ~root/.pyenv the program keeps uid 0 without capabilities, so root-readable secrets are
readable, and the last stderr line -- which the program controls -- lands in result records); CPU and memory
pressure up to workers x NPROC x memory_mb (no cgroups); kernel exploits and side channels. Hostile code beyond
model samples belongs in a VM.

isolation() reports the protections active on this machine. Without a network namespace, a PID namespace or
Landlock, execute() raises SandboxUnavailable unless the caller passes allow_weak_isolation=True: a sample is
never run unsandboxed silently.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lorabench.errors import LorabenchError

NPROC = 16            # processes + threads per sample, launcher included (HumanEval/MBPP need 1)
NOFILE = 256
FSIZE_MB = 16         # largest file a sample may write (its stderr included)
TMPFS_MB = 64         # size of the private working directory
DETAIL_CHARS = 500
REQUIRED = ("net_namespace", "pid_namespace", "landlock_fs")   # the minimum for execute() without opt-out
MARKER = "LORABENCH_SANDBOX"   # MARKER=<evaluator pid> in every sandboxed program's environment (finds strays)

_STATUSES = ("passed", "failed", "timeout", "killed", "error")


@dataclass(frozen=True)
class Result:
    passed: bool
    status: str        # 'passed' | 'failed' | 'timeout' | 'killed' (signal) | 'error' (could not start)
    detail: str = ""   # last stderr line or the reason, <= 500 chars


class SandboxUnavailable(LorabenchError):
    """This machine cannot isolate untrusted code well enough (see isolation())."""


def execute(program: str, timeout: float = 10.0, memory_mb: int = 1024, *,
            allow_weak_isolation: bool = False) -> Result:
    """Run a complete Python program sandboxed; passed means it exited 0 within the limits."""
    if not timeout > 0 or memory_mb < 64:
        raise ValueError(f"sandbox needs timeout > 0 and memory_mb >= 64, got {timeout}, {memory_mb}")
    iso = isolation()
    if not iso["sufficient"] and not allow_weak_isolation:
        raise SandboxUnavailable(
            f"cannot sandbox generated code here: missing {', '.join(iso['missing'])} ({iso.get('reason', '')}); "
            "enable unprivileged user namespaces and Landlock, or pass allow_weak_isolation=True to run with "
            f"the protections available: {iso}")
    required = () if allow_weak_isolation else REQUIRED
    return _run(program, timeout, memory_mb, iso["mode"], required)


def execute_many(programs: list[str], timeout: float = 10.0, memory_mb: int = 1024,
                 workers: int | None = None, *, allow_weak_isolation: bool = False) -> list[Result]:
    """execute() over many programs in parallel (one sandboxed process per thread); results in input order."""
    if not programs:
        return []
    isolation()   # probe once, before the threads race for it
    workers = max(1, min(workers or os.cpu_count() or 1, len(programs)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: execute(p, timeout, memory_mb, allow_weak_isolation=allow_weak_isolation),
                             programs))


_ISOLATION: dict | None = None
_ISOLATION_LOCK = threading.Lock()

# The probe program reports what the sandboxed program itself sees.
_PROBE = ("import json, os, sys\n"
          "cap = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
          "print(json.dumps({'uid': os.getuid(), 'pid': os.getpid(), 'cap_eff': cap}), file=sys.stderr)\n")


def isolation() -> dict:
    """The protections active on this machine (probed once per process by running a program sandboxed).

    Recorded beside pass@k. `mode` is 'drop_uid' (root: namespaces + a uid of its own per sample) or 'userns'
    (a user namespace, the caller's uid without capabilities); `sufficient` says whether REQUIRED all hold.
    """
    global _ISOLATION
    with _ISOLATION_LOCK:
        if _ISOLATION is None:
            _ISOLATION = _probe()
        return dict(_ISOLATION)


def _probe() -> dict:
    # Root prefers a dedicated uid (DAC protects root-owned files too), which only works when the interpreter
    # is usable by an unprivileged uid; otherwise a user namespace without capabilities.
    modes = ["drop_uid", "userns"] if os.geteuid() == 0 else ["userns"]
    tries = []
    for mode in modes:
        report, tail = _launch(_PROBE, 10.0, 512, mode, ())
        seen = _last_json(tail)
        tries.append(f"{mode}: {report.get('status')} {report.get('detail', '')}".strip())
        if report.get("status") == "passed" and seen is not None:
            break
    else:
        return {"sufficient": False, "missing": list(REQUIRED), "mode": modes[-1],
                "reason": "the probe program did not run: " + "; ".join(tries)}
    layers = report.get("layers", {})
    missing = [k for k in REQUIRED if not layers.get(k)]
    iso = {"sufficient": not missing, "missing": missing, "mode": mode,
           "process": "separate interpreter (python -I -B), own session",
           **{k: layers[k] for k in sorted(layers)},
           "uid": seen["uid"], "uid_per_sample": mode == "drop_uid", "capabilities": seen["cap_eff"],
           "sees_pid": seen["pid"],
           "rlimits": {"cpu_s": "ceil(timeout)+1", "as_mb": "memory_mb", "nproc": NPROC, "nofile": NOFILE,
                       "fsize_mb": FSIZE_MB, "core": 0}}
    if missing:
        iso["reason"] = "not available on this machine/kernel"
    return iso


def _last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


# ---------------------------------------------------------------------------------------------------------
# Parent side: one launcher process per sample.

_UID_BASE = 2_000_000_000      # per-sample uids: far above any real account, unique per evaluator pid & slot
_uid_slots: set[int] = set()
_uid_lock = threading.Lock()


def _take_uid() -> int:
    with _uid_lock:
        slot = next(i for i in range(1024) if i not in _uid_slots)   # > 1024 concurrent samples: unsupported
        _uid_slots.add(slot)
    return _UID_BASE + (os.getpid() % 4096) * 1024 + slot


def _give_uid(uid: int) -> None:
    with _uid_lock:
        _uid_slots.discard((uid - _UID_BASE) % 1024)


def _run(program: str, timeout: float, memory_mb: int, mode: str, required) -> Result:
    report, tail = _launch(program, timeout, memory_mb, mode, required)
    status = report.get("status", "error")
    detail = report.get("detail", "")
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    if status == "passed":
        detail = ""
    elif status == "failed":
        detail = last or detail
    elif status == "killed" and last:
        detail = f"{detail}; {last}"
    return Result(status == "passed", status, detail[-DETAIL_CHARS:] if status == "failed" else detail[:DETAIL_CHARS])


def _launch(program: str, timeout: float, memory_mb: int, mode: str, required,
            python: str = sys.executable) -> tuple[dict, str]:
    """Start the launcher, feed it the program, return (its report, the tail of the program's stderr).

    `python` runs the program; the launcher itself always runs on the evaluator's interpreter."""
    workdir = tempfile.mkdtemp(prefix="lorabench-sbx-")
    uid = _take_uid() if mode == "drop_uid" else None
    spec = {"timeout": timeout, "memory_mb": memory_mb, "workdir": workdir, "python": python,
            "mode": mode, "uid": uid, "required": list(required), "owner": os.getpid()}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    boot = f"import sys; sys.path.insert(0, {root!r}); from lorabench.eval.sandbox import _launcher_main; " \
           "_launcher_main(sys.argv[1])"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    try:
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", "-c", boot, json.dumps(spec)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd="/",
                                        env=env, close_fds=True, start_new_session=True)
            except OSError as e:
                return {"status": "error", "detail": f"could not start the sandbox launcher: {e}"}, ""
            try:
                # The launcher keeps the limit itself; this is the backstop should it hang.
                out, _ = proc.communicate(program.encode("utf-8", "replace"), timeout=timeout + 30)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid)
                proc.communicate()
                out = b""
            err.seek(0, os.SEEK_END)
            err.seek(max(0, err.tell() - 4096))
            tail = err.read().decode("utf-8", "replace")
        report = _last_json(out.decode("utf-8", "replace")) if out else None
        if report is None or report.get("status") not in _STATUSES:
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
            report = {"status": "error", "detail": f"sandbox launcher exited {proc.returncode}: {last}"}
        return report, tail
    finally:
        _rmtree(workdir)
        if uid is not None:
            _give_uid(uid)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rmtree(path: str) -> None:
    def fix(func, p, exc):   # a program may have made its own files read-only or unlistable
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=fix)


# ---------------------------------------------------------------------------------------------------------
# Launcher side. Three processes: the launcher L (evaluator's namespaces, keeps the clock), the init C (PID 1 of
# the new PID namespace: mounts, reaps, reports the exit status) and the program G (limits, Landlock, seccomp,
# capabilities dropped, then exec of a fresh interpreter). Stdlib only; runs as `python -I -S`.

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = \
    0x00020000, 0x08000000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 1, 4, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_SECCOMP = 38, 47, 4, 22
SECBITS = 0x01 | 0x02 | 0x20 | 0x40 | 0x80   # NOROOT(+LOCKED), KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE(+LOCKED)

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _prctl(option: int, arg2=0, arg3=0) -> int:
    return _check(_c().prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                             ctypes.c_ulong(0)), f"prctl({option})")


def _launcher_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        report = _launcher(spec, sys.stdin.buffer.read().decode("utf-8", "replace"))
    except BaseException as e:  # noqa: BLE001  the parent must get a report, whatever happened here
        report = {"status": "error", "detail": f"sandbox launcher: {type(e).__name__}: {e}"}
    try:
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    except OSError:
        pass
    os._exit(0)


def _launcher(spec: dict, program: str) -> dict:
    layers = _unshare(spec["mode"])
    _prctl(PR_SET_DUMPABLE, 0)   # nothing may ptrace or read the launcher (after writing our own uid_map)
    missing = [k for k in spec["required"] if k in layers and not layers[k]]
    if missing:
        return {"status": "error", "detail": f"sandbox: could not create {', '.join(missing)}", "layers": layers}
    life_r, life_w = os.pipe()      # the init watches it to notice the launcher's death
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(life_w)
            os.close(rep_r)
            _init(spec, program, life_r, rep_w, layers)
        except BaseException as e:  # noqa: BLE001
            os.write(rep_w, (json.dumps({"error": f"init: {type(e).__name__}: {e}"}) + "\n").encode())
        finally:
            os._exit(70)
    os.close(life_r)
    os.close(rep_w)
    os.set_blocking(rep_r, False)
    timed_out = not _wait_for(pid, spec["timeout"])
    data = _drain(rep_r)
    if timed_out:
        if not layers["pid_namespace"]:   # weak mode: no namespace dies with the init; kill the program's group
            pgid = next((m["pgid"] for m in _parse(data) if "pgid" in m), None)
            if pgid:
                _killpg(pgid)
        os.kill(pid, signal.SIGKILL)   # the init's death kills its whole PID namespace
    _, status = os.waitpid(pid, 0)     # returns once every process of the namespace is gone
    messages = _parse(data + _drain(rep_r))
    os.close(rep_r)
    for m in messages:
        layers.update(m.get("layers", {}))
    report = {"layers": layers}
    errors = [m["error"] for m in messages if "error" in m]
    final = next((m for m in messages if "exit" in m or "signal" in m or "limit" in m), None)
    if timed_out:
        report.update(status="timeout", detail=f"wall-clock limit of {spec['timeout']:g} s exceeded")
    elif errors:
        report.update(status="error", detail="sandbox: " + errors[0])
    elif final is None:
        report.update(status="killed", detail=f"sandbox init ended without a report (wait status {status})")
    elif "limit" in final:
        report.update(status="killed", detail=f"killed: {final['limit']}")
    elif "exit" in final:
        code = final["exit"]
        report.update(status="passed" if code == 0 else "failed", detail=f"exit code {code}")
    elif final["signal"] == signal.SIGXCPU:
        report.update(status="timeout", detail="CPU time limit exceeded (SIGXCPU)")
    else:
        report.update(status="killed", detail=f"killed by {_signame(final['signal'])}")
    return report


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _wait_for(pid: int, timeout: float) -> bool:
    """True when the child exited within `timeout` seconds (it is left unreaped)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        ready = poll.poll(max(1, int(timeout * 1000)))
        os.close(fd)
        return bool(ready)
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.01)
    return False


def _drain(fd: int) -> bytes:
    """What a non-blocking pipe holds now."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _parse(data: bytes) -> list[dict]:
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _unshare(mode: str) -> dict:
    """New namespaces for the launcher's children. 'drop_uid' needs root; 'userns' works unprivileged;
    'none' (tests of the weak mode) creates none."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
    layers = dict.fromkeys(("user_namespace", "net_namespace", "pid_namespace", "mount_namespace",
                            "ipc_namespace"), False)
    uid, gid = os.geteuid(), os.getegid()
    if mode == "none":
        return layers
    try:
        if mode == "userns":
            _check(_c().unshare(flags | CLONE_NEWUSER), "unshare")
            # Map only ourselves: the sandbox keeps our uid, and capabilities only inside the namespace.
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            layers["user_namespace"] = True
        else:
            _check(_c().unshare(flags), "unshare")
    except OSError:
        return layers   # no namespaces: reported, and refused by execute() unless weak isolation is allowed
    layers.update(net_namespace=True, pid_namespace=True, mount_namespace=True, ipc_namespace=True)
    return layers


def _init(spec: dict, program: str, life_r: int, rep_w: int, layers: dict) -> None:
    """PID 1 of the new namespace: private /proc and workdir, then run the program and report how it ended."""
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)   # launcher killed -> init killed -> namespace killed
    if select.select([life_r], [], [], 0)[0]:   # the launcher died before the line above
        os._exit(71)
    _prctl(PR_SET_DUMPABLE, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)

    def report(msg: dict) -> None:
        os.write(rep_w, (json.dumps(msg) + "\n").encode())

    workdir = spec["workdir"]
    mine = {"private_proc": False, "tmpfs_workdir": False, "process_watchdog": False}
    if layers["mount_namespace"]:
        libc = _c()
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0:   # nothing propagates to the host
            mine["private_proc"] = libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                              None) == 0
            owner = spec["uid"] if spec["uid"] is not None else os.geteuid()
            opts = f"size={TMPFS_MB}m,nr_inodes=4096,mode=0700,uid={owner},gid={owner}".encode()
            mine["tmpfs_workdir"] = libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                                               opts) == 0
    if not mine["tmpfs_workdir"] and spec["uid"] is not None:
        os.chown(workdir, spec["uid"], spec["uid"])
    main = os.path.join(workdir, "main.py")
    with open(main, "w") as f:
        f.write(program)
    os.chmod(main, 0o644)   # readable by the per-sample uid whatever the evaluator's umask
    mine["process_watchdog"] = mine["private_proc"]
    report({"layers": mine})

    child = os.fork()
    if child == 0:
        try:
            os.close(life_r)
            _program(spec, rep_w, devnull)
        except BaseException as e:  # noqa: BLE001
            try:
                report({"error": f"{type(e).__name__}: {e}"})
            finally:
                os._exit(127)
    report({"pgid": child})
    final = _supervise(child, watch=mine["private_proc"])
    if not layers["pid_namespace"]:   # weak mode: no namespace to die with; kill what stayed in the group
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
    report(final or {"error": "program vanished"})
    os._exit(0)


def _supervise(child: int, watch: bool) -> dict | None:
    """Reap until the program ends. With a private /proc, also count the namespace's processes: RLIMIT_NPROC
    does not apply to uid 0, so a fork bomb there is stopped by killing every process but this init."""
    try:
        fd = os.pidfd_open(child)
    except (AttributeError, OSError):
        fd = None
    poll = select.poll()
    if fd is not None:
        poll.register(fd, select.POLLIN)
    while True:
        poll.poll(10)   # wakes at once when the program exits; else every 10 ms
        while True:     # as PID 1, reap orphans too
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                break
            if pid == child:
                return ({"exit": os.waitstatus_to_exitcode(status)} if os.WIFEXITED(status)
                        else {"signal": os.WTERMSIG(status)})
        if watch and sum(name.isdigit() for name in os.listdir("/proc")) > NPROC:
            while True:   # again and again: a process may be mid-fork while the first kill goes round
                try:
                    os.kill(-1, signal.SIGKILL)   # from the init: every other process of the namespace
                except ProcessLookupError:
                    pass
                try:
                    while os.waitpid(-1, os.WNOHANG)[0]:
                        pass
                except ChildProcessError:
                    return {"limit": f"more than {NPROC} processes"}
                poll.poll(1)


def _program(spec: dict, rep_w: int, devnull: int) -> None:
    """Limits, then Landlock, seccomp and capability drop, then exec the program in a fresh interpreter."""
    os.setsid()   # its own process group: kill(0, ...) stays inside the program's own processes
    workdir = spec["workdir"]
    os.chdir(workdir)
    os.closerange(3, rep_w)
    os.closerange(rep_w + 1, max(rep_w + 2, 65536))
    mem = spec["memory_mb"] << 20
    cpu = math.ceil(spec["timeout"]) + 1
    for lim, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_NPROC, (NPROC, NPROC)), (resource.RLIMIT_NOFILE, (NOFILE, NOFILE)),
                       (resource.RLIMIT_FSIZE, (FSIZE_MB << 20, FSIZE_MB << 20)), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(lim, value)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    layers = {"no_new_privs": True}
    layers.update(_landlock(workdir))
    missing = [k for k in spec["required"] if k in layers and not layers[k]]
    if missing:
        raise RuntimeError(f"could not enable {', '.join(missing)}")
    layers["capabilities_dropped"] = _drop_capabilities()
    if spec["uid"] is not None:
        os.setgroups([])
        os.setresgid(spec["uid"], spec["uid"], spec["uid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    layers["seccomp"] = _seccomp()
    os.write(rep_w, (json.dumps({"layers": layers}) + "\n").encode())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           MARKER: str(spec["owner"])}
    os.execve(spec["python"], [spec["python"], "-I", "-B", "main.py"], env)


def _drop_capabilities() -> bool:
    """Empty bounding and ambient sets, and no capabilities for uid 0 on exec (SECBIT_NOROOT)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 63
    try:
        for cap in range(last + 1):
            _prctl(PR_CAPBSET_DROP, cap)
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        _prctl(PR_SET_SECUREBITS, SECBITS)
    except OSError:
        return False
    return True


# Landlock (Linux >= 5.13): syscalls 444-446 on every architecture.
_LL_FS_WRITE = [(1, 1 << 1), (1, 1 << 4), (1, 1 << 5), (1, 1 << 6), (1, 1 << 7), (1, 1 << 8), (1, 1 << 9),
                (1, 1 << 10), (1, 1 << 11), (1, 1 << 12), (2, 1 << 13), (3, 1 << 14), (5, 1 << 15)]
# (ABI, right): WRITE_FILE, REMOVE_DIR, REMOVE_FILE, MAKE_CHAR/DIR/REG/SOCK/FIFO/BLOCK/SYM, REFER, TRUNCATE,
# IOCTL_DEV. EXECUTE, READ_FILE and READ_DIR are not handled, hence allowed everywhere.
_LL_FILE_RIGHTS = (1 << 1) | (1 << 14) | (1 << 15)   # the rights that apply to a file (for /dev/null)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock(workdir: str) -> dict:
    libc = _c()
    out = {"landlock_abi": 0, "landlock_fs": False, "landlock_net": False, "landlock_scope": False}
    abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return out
    fs = 0
    for need, right in _LL_FS_WRITE:
        if abi >= need:
            fs |= right
    attr = _RulesetAttr(fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)   # TCP bind+connect; signals+abstract unix
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _check(libc.syscall(ctypes.c_long(444), ctypes.byref(attr), ctypes.c_size_t(size),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
    for path, rights in ((workdir, fs), (os.devnull, fs & _LL_FILE_RIGHTS)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = _PathBeneath(rights, fd)
        _check(libc.syscall(ctypes.c_long(445), ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                            ctypes.c_uint32(0)), f"landlock_add_rule({path})")
        os.close(fd)
    _check(libc.syscall(ctypes.c_long(446), ctypes.c_int(ruleset), ctypes.c_uint32(0)), "landlock_restrict_self")
    os.close(ruleset)
    return {"landlock_abi": abi, "landlock_fs": True, "landlock_net": abi >= 4, "landlock_scope": abi >= 6}


# Syscall numbers per architecture. Landlock does not cover metadata changes, and the program still owns
# whatever its uid owns outside the sandbox (uid 0 owns the system): chmod, utimes, xattrs (ACLs) and inode
# flags are refused outright, inside the working directory too.
_SECCOMP_ARCH = {
    "x86_64": {"audit": 0xC000003E, "socket": 41, "ioctl": 16,
               "deny": [425,                                 # io_uring_setup (io_uring can open sockets)
                        90, 91, 268, 452,                    # chmod fchmod fchmodat fchmodat2
                        132, 235, 261, 280,                  # utime utimes futimesat utimensat
                        188, 189, 190, 463, 197, 198, 199, 466]},  # [lf]setxattr(at) [lf]removexattr(at)
    "aarch64": {"audit": 0xC00000B7, "socket": 198, "ioctl": 29,
                "deny": [425, 52, 53, 452, 88, 5, 6, 7, 463, 14, 15, 16, 466]},
}
_FS_IOC_SETFLAGS = (0x40086602, 0x40046602, 0x401C5820)   # FS_IOC_SETFLAGS, its 32-bit form, FS_IOC_FSSETXATTR


def _seccomp_program(arch: dict) -> list[tuple[int, int, int, int]]:
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


def _seccomp() -> bool:
    arch = _SECCOMP_ARCH.get(platform.machine())
    if arch is None:
        return False
    prog = _seccomp_program(arch)
    filters = (_SockFilter * len(prog))(*[_SockFilter(*p) for p in prog])
    fprog = _SockFprog(len(prog), filters)
    try:
        _check(_c().prctl(PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog), ctypes.c_ulong(0),
                          ctypes.c_ulong(0)), "seccomp")
    except OSError:
        return False
    return True
