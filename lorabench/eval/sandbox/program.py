"""The program process G: its own root, limits, Landlock, capabilities and uid dropped, seccomp, then exec of a
fresh interpreter running the harness (harness.py), which runs main.py. Stdlib only (runs in the launcher)."""
from __future__ import annotations

import fcntl
import json
import math
import os
import resource
import signal

from lorabench.eval.sandbox import FSIZE_MB, MARKER, NOFILE, NPROC
from lorabench.eval.sandbox import kernel as k
from lorabench.eval.sandbox import rootfs

TOKEN_FD, PROOF_FD = 3, 4   # as harness.py expects them
DEVICES = {"/dev/null": "rw", "/dev/urandom": "r"}
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness.py")


def harness() -> tuple[str, int]:
    """The harness's source and the line of its finish() call (the guard checks main() stands there)."""
    with open(HARNESS) as f:
        source = f.read()
    line = next(i for i, text in enumerate(source.splitlines(), 1) if text.strip().startswith("finish()  # FINISH"))
    return source, line


def program_main(spec: dict, workdir: str, rep_w: int, token_r: int, proof_w: int, mount_ns: bool) -> None:
    """Runs in the init's child; ends in execve or raises (the init reports the error)."""
    source, finish_line = harness()   # read while the host's tree is still there
    os.setsid()   # its own process group: kill(0, ...) stays inside the program's own processes
    os.umask(0o022)
    rep_w = _arrange_fds(rep_w, token_r, proof_w)
    layers = {"private_root": False}
    if mount_ns:
        try:
            rootfs.pivot(os.path.join(spec["base"], "root"), workdir, spec["readable"], list(DEVICES))
            layers["private_root"] = True
        except OSError:
            if "private_root" in spec["required"]:
                raise
    os.chdir(workdir)
    mem = spec["memory_mb"] << 20
    cpu = math.ceil(spec["timeout"]) + 1
    for lim, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_NPROC, (NPROC, NPROC)), (resource.RLIMIT_NOFILE, (NOFILE, NOFILE)),
                       (resource.RLIMIT_FSIZE, (FSIZE_MB << 20, FSIZE_MB << 20)), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(lim, value)
    k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    layers["no_new_privs"] = True
    layers.update(k.landlock(workdir, spec["readable"], DEVICES))
    missing = [name for name in spec["required"] if name in layers and not layers[name]]
    if missing:
        raise RuntimeError(f"could not enable {', '.join(missing)}")
    layers["capabilities_dropped"] = k.drop_capabilities()
    if spec["uid"] is not None:
        os.setgroups([])
        os.setresgid(spec["uid"], spec["uid"], spec["uid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    layers["seccomp"] = k.seccomp()
    os.write(rep_w, (json.dumps({"layers": layers}) + "\n").encode())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           MARKER: str(spec["owner"])}
    argv = [spec["python"], "-I", "-B", "-c", source, str(finish_line)] + (["probe"] if spec.get("probe") else [])
    os.execve(spec["python"], argv, env)


def _arrange_fds(rep_w: int, token_r: int, proof_w: int) -> int:
    """fd 3 the token pipe and fd 4 the proof pipe (both inherited by the program), the report pipe higher up
    and closed on exec, stdin/stdout/stderr as they are; every other fd closed. Returns the report pipe's fd."""
    rep, token, proof = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (rep_w, token_r, proof_w))
    os.dup2(token, TOKEN_FD)
    os.dup2(proof, PROOF_FD)
    os.closerange(PROOF_FD + 1, rep)
    os.closerange(rep + 1, 65536)
    return rep
