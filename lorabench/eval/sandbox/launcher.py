"""Launcher side of the sandbox. Three processes: the launcher L (the evaluator's namespaces, keeps the clock),
the init C (PID 1 of the new PID namespace: mounts the working directory, holds the run's token, reaps, reports)
and the program G (program.py: its own root, limits, Landlock, seccomp, no capabilities, then the harness).

Stdlib only; L runs as `python -I -S` and reports one JSON line on stdout.
"""
from __future__ import annotations

import hmac
import json
import os
import select
import signal
import sys
import time

from lorabench.eval.sandbox import NPROC, TMPFS_MB
from lorabench.eval.sandbox import kernel as k
from lorabench.eval.sandbox.program import program_main

TOKEN_BYTES = 32


def launcher_main(spec_json: str) -> None:
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
    k.prctl(k.PR_SET_DUMPABLE, 0)   # nothing may ptrace or read the launcher (after writing our own uid_map)
    missing = [name for name in spec["required"] if name in layers and not layers[name]]
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
    return {"layers": layers, **_verdict(spec, messages, timed_out, status)}


def _verdict(spec: dict, messages: list[dict], timed_out: bool, status: int) -> dict:
    errors = [m["error"] for m in messages if "error" in m]
    final = next((m for m in messages if "exit" in m or "signal" in m or "limit" in m), None)
    if timed_out:
        return {"status": "timeout", "detail": f"wall-clock limit of {spec['timeout']:g} s exceeded"}
    if errors:
        return {"status": "error", "detail": "sandbox: " + errors[0]}
    if final is None:
        return {"status": "killed", "detail": f"sandbox init ended without a report (wait status {status})"}
    if "limit" in final:
        return {"status": "killed", "detail": f"killed: {final['limit']}"}
    if "exit" in final:
        code = final["exit"]
        if code == 0 and final.get("proof"):
            return {"status": "passed", "detail": "checks completed"}
        if code == 0:
            return {"status": "failed", "detail": "exit code 0 before its checks completed", "early_exit": True}
        return {"status": "failed", "detail": f"exit code {code}"}
    if final["signal"] == signal.SIGXCPU:
        return {"status": "timeout", "detail": "CPU time limit exceeded (SIGXCPU)"}
    return {"status": "killed", "detail": f"killed by {_signame(final['signal'])}"}


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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
    flags = k.CLONE_NEWNS | k.CLONE_NEWNET | k.CLONE_NEWPID | k.CLONE_NEWIPC
    layers = dict.fromkeys(("user_namespace", "net_namespace", "pid_namespace", "mount_namespace",
                            "ipc_namespace"), False)
    uid, gid = os.geteuid(), os.getegid()
    if mode == "none":
        return layers
    try:
        if mode == "userns":
            k.unshare(flags | k.CLONE_NEWUSER)
            # Map only ourselves: the sandbox keeps our uid, and capabilities only inside the namespace.
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            layers["user_namespace"] = True
        else:
            k.unshare(flags)
    except OSError:
        return layers   # no namespaces: reported, and refused by execute() unless weak isolation is allowed
    layers.update(net_namespace=True, pid_namespace=True, mount_namespace=True, ipc_namespace=True)
    return layers


def _init(spec: dict, program: str, life_r: int, rep_w: int, layers: dict) -> None:
    """PID 1 of the new namespace: private /proc and workdir, the run's token, then run the program and report
    how it ended and whether it proved that its checks completed."""
    os.setsid()
    k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)   # launcher killed -> init killed -> namespace killed
    if select.select([life_r], [], [], 0)[0]:      # the launcher died before the line above
        os._exit(71)
    k.prctl(k.PR_SET_DUMPABLE, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)

    def report(msg: dict) -> None:
        os.write(rep_w, (json.dumps(msg) + "\n").encode())

    workdir = os.path.join(spec["base"], "work")
    owner = spec["uid"] if spec["uid"] is not None else os.geteuid()
    mine = {"private_proc": False, "tmpfs_workdir": False, "process_watchdog": False}
    if layers["mount_namespace"] and _try(k.mount, None, "/", None, k.MS_REC | k.MS_PRIVATE):   # nothing leaks out
        mine["private_proc"] = _try(k.mount, "proc", "/proc", "proc", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
        mine["tmpfs_workdir"] = _try(k.mount, "tmpfs", workdir, "tmpfs", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC,
                                     f"size={TMPFS_MB}m,nr_inodes=4096,mode=0700,uid={owner},gid={owner}")
    if not mine["tmpfs_workdir"] and spec["uid"] is not None:
        os.chown(workdir, owner, owner)
        os.chmod(spec["base"], 0o711)   # weak mode: the per-sample uid must reach its workdir
    main = os.path.join(workdir, "main.py")
    with open(main, "w") as f:
        f.write(program)
    os.chmod(main, 0o644)   # readable by the per-sample uid whatever the evaluator's umask
    mine["process_watchdog"] = mine["private_proc"]
    report({"layers": mine})

    token = os.urandom(TOKEN_BYTES).hex().encode()   # never leaves this process but through the token pipe
    token_r, token_w = os.pipe()
    proof_r, proof_w = os.pipe()
    os.write(token_w, token)
    os.close(token_w)
    child = os.fork()
    if child == 0:
        try:
            os.close(life_r)
            os.close(proof_r)
            program_main(spec, workdir, rep_w, token_r, proof_w, layers["mount_namespace"])
        except BaseException as e:  # noqa: BLE001
            try:
                report({"error": f"{type(e).__name__}: {e}"})
            finally:
                os._exit(127)
    os.close(token_r)
    os.close(proof_w)
    report({"pgid": child})
    final = _supervise(child, watch=mine["private_proc"])
    if not layers["pid_namespace"]:   # weak mode: no namespace to die with; kill what stayed in the group
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
    if final is not None:
        os.set_blocking(proof_r, False)
        final["proof"] = hmac.compare_digest(_drain(proof_r), token)   # exactly the token, nothing else
    report(final or {"error": "program vanished"})
    os._exit(0)


def _try(func, *args) -> bool:
    try:
        func(*args)
    except OSError:
        return False
    return True


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
