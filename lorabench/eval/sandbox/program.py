"""The program process G: limits, then Landlock, seccomp and capability drop, then exec of the program in a
fresh interpreter. Stdlib only (runs in the launcher)."""
from __future__ import annotations

import json
import math
import os
import resource
import signal

from lorabench.eval.sandbox import FSIZE_MB, MARKER, NOFILE, NPROC
from lorabench.eval.sandbox import kernel as k


def program_main(spec: dict, workdir: str, rep_w: int) -> None:
    """Runs in the init's child; ends in execve or raises (the init reports the error)."""
    os.setsid()   # its own process group: kill(0, ...) stays inside the program's own processes
    os.chdir(workdir)
    os.closerange(3, rep_w)
    os.closerange(rep_w + 1, max(rep_w + 2, 65536))
    mem = spec["memory_mb"] << 20
    cpu = math.ceil(spec["timeout"]) + 1
    for lim, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_NPROC, (NPROC, NPROC)), (resource.RLIMIT_NOFILE, (NOFILE, NOFILE)),
                       (resource.RLIMIT_FSIZE, (FSIZE_MB << 20, FSIZE_MB << 20)), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(lim, value)
    k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    layers = {"no_new_privs": True}
    layers.update(k.landlock(workdir))
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
    os.execve(spec["python"], [spec["python"], "-I", "-B", "main.py"], env)
