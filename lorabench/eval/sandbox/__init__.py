"""Run untrusted, model-generated Python programs (HumanEval/MBPP samples) and say whether each passed.

bigcode-evaluation-harness (execute.py) runs samples in a `multiprocessing` child whose `reliability_guard()`
nulls a few functions (os.kill, shutil.rmtree, ...); its docstring warns it "is NOT a security sandbox": the
program keeps the evaluator's user, network, files and processes and can undo the guard with one import.
Here every limit is enforced by the kernel from outside the program, which runs in a fresh interpreter
(`python -I -B`) as the third process of launcher -> init -> program (launcher.py, program.py; kernel.py wraps
the kernel calls, rootfs.py builds the program's root).

A sample passes only when its checks completed. The program is the completion, the tests and `check(...)`;
harness.py runs it and, only once it ran to its end, writes a per-run random token, which the init alone knows,
to a pipe the init reads afterwards (not stdout, not the exit status). sys.exit(0), exit(), quit(), os._exit(0),
raise SystemExit, an excepthook or an atexit handler that exits 0 all end as failures ("exit code 0 before its
checks completed"), as in the official harnesses. harness.py says why the program cannot find the token.

Protected against (each pinned by tests/test_sandbox*.py):
- passing without running the checks: the token above;
- reading the host: the program's root is a small read-only tmpfs (rootfs.py) holding only the interpreter,
  its standard library, the shared-library directories, /dev/null, /dev/urandom and its own working directory;
  Landlock grants reads beneath those paths only and writes inside the working directory only; as root with
  the interpreter anywhere (even under a root-only ~root/.pyenv) the program runs as a uid of its own. Home
  directories, /etc/shadow, keys, /proc, the repository and other runs' outputs are not there to read;
- runaway time: a wall-clock limit kept by the launcher (it kills the namespace's init), plus RLIMIT_CPU;
- memory bombs: RLIMIT_AS = memory_mb per process;
- fork bombs: RLIMIT_NPROC, counted per sample (a user namespace or a uid of its own), and -- since the kernel
  exempts uid 0 from it -- the init counting the namespace's processes and killing them all above NPROC;
- fd exhaustion and huge files: RLIMIT_NOFILE, RLIMIT_FSIZE; huge output: stdout goes to /dev/null, stderr to
  an FSIZE-capped file of which only the tail is read;
- the network: a new network namespace (loopback down: connect/sendto fail); Landlock (ABI >= 4) refuses every
  TCP bind/connect; seccomp refuses AF_UNIX sockets (a pathname socket such as docker.sock is reachable from
  any network namespace) and io_uring (which could open sockets past seccomp);
- writes: Landlock lets the program create, write, rename or delete only inside its working directory (a
  private 64 MiB tmpfs in a mount namespace, discarded with it) and write /dev/null; seccomp refuses chmod,
  utime, xattrs/ACLs and inode flags, which Landlock does not cover (also inside the workdir);
- the evaluator and other processes: a new PID namespace and a private /proc (kill(-1), kill(getppid()), a
  host pid reach nothing outside), its own session, Landlock's signal/ptrace scoping, seccomp refusing ptrace
  and process_vm_readv, an IPC namespace; no capabilities (no_new_privs, empty bounding set, SECBIT_NOROOT);
- leftovers: when the program ends the init exits, and the kernel kills every process left in the namespace;
  execute() returns only after that, and removes the working directory.

What a Result keeps of the program's output, and so what samples.jsonl beside a record keeps: its status and,
for a failure, the last non-empty line of its stderr (the exception line, e.g. "AssertionError" or
"NameError: name 'x' is not defined", which says why the sample failed), made printable and cut to
DETAIL_CHARS; otherwise a fixed reason (exit code, signal, limit). Nothing of stdout. The program controls that
line, but it can read nothing of the host beyond the public files listed above, so the line can carry its own
text and computations, never a host secret.

Not protected against: what lies in the readable directories, which the program may read and run (all of /usr/lib,
/usr/local/lib and the interpreter's lib, its site-packages included: nothing secret belongs there), and what the
kernel tells anyone (uname, CPU model and count, time); a memory-safety bug in CPython or a stdlib C module, which
in-process code could use to find the token (harness.py refuses ctypes, hand-made code objects, gc walks and other
threads' frames, the known ways in); a completion that makes the tests pass by construction (an object equal to
everything), which the official harnesses also score as passing; CPU and memory pressure up to workers x NPROC x
memory_mb (no cgroups); kernel exploits and side channels. Hostile code beyond model samples belongs in a VM.

isolation() reports the protections active on this machine. Without a network namespace, a PID namespace,
Landlock or the private root, execute() raises SandboxUnavailable unless the caller passes
allow_weak_isolation=True: a sample is never run unsandboxed silently.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lorabench.errors import LorabenchError

NPROC = 16            # processes + threads per sample, launcher and harness guard included (HumanEval/MBPP need 2)
NOFILE = 256
FSIZE_MB = 16         # largest file a sample may write (its stderr included)
TMPFS_MB = 64         # size of the private working directory
DETAIL_CHARS = 500
REQUIRED = ("net_namespace", "pid_namespace", "landlock_fs", "private_root")   # the minimum without opt-out
MARKER = "LORABENCH_SANDBOX"   # MARKER=<evaluator pid> in every sandboxed program's environment (finds strays)
# Beside the interpreter's own files: where the dynamic loader finds shared libraries (symlinks are followed).
SYSTEM_READABLE = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache")

_STATUSES = ("passed", "failed", "timeout", "killed", "error")


@dataclass(frozen=True)
class Result:
    passed: bool
    status: str        # 'passed' | 'failed' | 'timeout' | 'killed' (signal) | 'error' (could not start)
    detail: str = ""   # last stderr line or the reason, printable, <= DETAIL_CHARS


class SandboxUnavailable(LorabenchError):
    """This machine cannot isolate untrusted code well enough (see isolation())."""


def execute(program: str, timeout: float = 10.0, memory_mb: int = 1024, *,
            allow_weak_isolation: bool = False) -> Result:
    """Run a complete Python program sandboxed; passed means it ran to its end (and exited) within the limits."""
    if not timeout > 0 or memory_mb < 64:
        raise ValueError(f"sandbox needs timeout > 0 and memory_mb >= 64, got {timeout}, {memory_mb}")
    iso = isolation()
    if not iso["sufficient"] and not allow_weak_isolation:
        raise SandboxUnavailable(
            f"cannot sandbox generated code here: missing {', '.join(iso['missing'])} ({iso.get('reason', '')}); "
            "enable unprivileged user namespaces and Landlock (and allow mounts and pivot_root in them), or pass "
            f"allow_weak_isolation=True to run with the protections available: {iso}")
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

_PROBE = "pass\n"   # run with probe=True: the harness reports what the program sees (uid, pid, CapEff)


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
    # Root prefers a dedicated uid (DAC protects root-owned files too); a user namespace without capabilities
    # is the fallback, and the only way for anyone else.
    modes = ["drop_uid", "userns"] if os.geteuid() == 0 else ["userns"]
    tries = []
    for mode in modes:
        report, tail = _launch(_PROBE, 10.0, 512, mode, (), probe=True)
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
           "process": "separate interpreter (python -I -B) running main.py under harness.py, own session",
           "pass_requires": "a per-run token the harness writes only after main.py ran to its end",
           **{k: layers[k] for k in sorted(layers)},
           "readable": _interpreter(sys.executable)["readable"],
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
_INTERPRETERS: dict[str, dict] = {}
_interpreter_lock = threading.Lock()
_QUERY = ("import json, os, sys, sysconfig\np = sysconfig.get_paths()\n"
          "print(json.dumps({'exe': os.path.realpath(sys.executable), 'dirs': [p['stdlib'], p['platstdlib'], "
          "sysconfig.get_config_var('LIBDIR') or p['stdlib']]}))\n")


def _interpreter(python: str) -> dict:
    """The interpreter's real executable (a venv's python runs as its base interpreter, with no site-packages)
    and what running it needs to read: itself, its standard library, its and the system's shared libraries.
    Asked once per interpreter; that is the evaluator's own or the caller's choice, never a sample."""
    with _interpreter_lock:
        if python not in _INTERPRETERS:
            out = subprocess.run([python, "-I", "-S", "-c", _QUERY], capture_output=True, check=True, timeout=60,
                                 env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
            info = json.loads(out.stdout)
            readable = {info["exe"], *(os.path.realpath(d) for d in info["dirs"])}
            readable.update(p for p in SYSTEM_READABLE if os.path.exists(p))
            _INTERPRETERS[python] = {"exe": info["exe"], "readable": sorted(readable)}
        return _INTERPRETERS[python]


def _take_uid() -> int:
    with _uid_lock:
        slot = next(i for i in range(1024) if i not in _uid_slots)   # > 1024 concurrent samples: unsupported
        _uid_slots.add(slot)
    return _UID_BASE + (os.getpid() % 4096) * 1024 + slot


def _give_uid(uid: int) -> None:
    with _uid_lock:
        _uid_slots.discard((uid - _UID_BASE) % 1024)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _run(program: str, timeout: float, memory_mb: int, mode: str, required) -> Result:
    report, tail = _launch(program, timeout, memory_mb, mode, required)
    status = report.get("status", "error")
    detail = report.get("detail", "")
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    if status == "passed":
        detail = ""
    elif status == "failed" and not report.get("early_exit"):
        detail = last or detail
    elif status == "killed" and last:
        detail = f"{detail}; {last}"
    detail = _printable(detail)
    return Result(status == "passed", status, detail[-DETAIL_CHARS:] if status == "failed" else detail[:DETAIL_CHARS])


def _launch(program: str, timeout: float, memory_mb: int, mode: str, required,
            python: str = sys.executable, probe: bool = False) -> tuple[dict, str]:
    """Start the launcher, feed it the program, return (its report, the tail of the program's stderr).

    `python` runs the program (probe: the harness reports uid, pid and capabilities on stderr); the launcher
    itself always runs on the evaluator's interpreter."""
    try:
        interp = _interpreter(python)
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return {"status": "error", "detail": f"cannot inspect the interpreter {python}: {e}"}, ""
    base = tempfile.mkdtemp(prefix="lorabench-sbx-")
    for sub in ("work", "root"):   # the working directory; the mount point of the program's root
        os.mkdir(os.path.join(base, sub), 0o700)
    uid = _take_uid() if mode == "drop_uid" else None
    spec = {"timeout": timeout, "memory_mb": memory_mb, "base": base, "python": interp["exe"],
            "readable": interp["readable"], "mode": mode, "uid": uid, "required": list(required),
            "owner": os.getpid(), "probe": probe}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    boot = f"import sys; sys.path.insert(0, {root!r}); from lorabench.eval.sandbox.launcher import launcher_main; " \
           "launcher_main(sys.argv[1])"
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
        _rmtree(base)
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
