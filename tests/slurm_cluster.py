"""A real one-node SLURM cluster for tests: the session fixture `slurm_cluster` and small job helpers.

The fixture runs `slurm/local_cluster.sh` (installs munge, slurmctld, slurmd, slurmdbd and MariaDB with
apt-get when missing, starts what is down; about a second when all is up). A cluster the session found
running is left running (another user's); one the session brought up is stopped at its end, unless
LORABENCH_SLURM_KEEP=1 (then the next session starts in a second). It skips only where the
machine cannot host the cluster (not root, not Debian/apt, no /proc) or when LORABENCH_SLURM=0; where it
can, a broken bring-up FAILS the tests with the script's output, since that is a real defect.

    def test_x(slurm_cluster, tmp_path):
        job = sbatch("echo hi", chdir=tmp_path)
        assert wait_state(job, "COMPLETED", source="sacct") == "COMPLETED"
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "slurm" / "local_cluster.sh"
# First bring-up installs ~6 Debian packages (about half a minute from a nearby mirror; minutes from a slow one).
BRINGUP_TIMEOUT_S = 900

# Job states after which a job never runs again by itself (a requeued job goes back to PENDING instead).
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE", "REVOKED"}


def cannot_host_cluster() -> str | None:
    """Why this machine cannot run slurm/local_cluster.sh, or None when it can."""
    if os.environ.get("LORABENCH_SLURM", "1") == "0":
        return "LORABENCH_SLURM=0: SLURM tests disabled by the user"
    if not Path("/proc/meminfo").exists():
        return "no /proc: slurm/local_cluster.sh needs Linux"
    if os.geteuid() != 0:
        return ("not root: slurm/local_cluster.sh installs packages and starts system daemons "
                "(run the tests as root, as CI does, to include the SLURM tier)")
    if not (Path("/etc/debian_version").exists() and shutil.which("apt-get") and shutil.which("bash")):
        return "not a Debian system with apt-get: slurm/local_cluster.sh installs SLURM from Debian packages"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node SLURM cluster (partition `debug`, accounting on); stopped afterwards if this session
    started it."""
    reason = cannot_host_cluster()
    if reason:
        pytest.skip(reason)
    t0 = time.monotonic()
    was_up = subprocess.run(["bash", str(SCRIPT), "status"], stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=60).returncode == 0
    try:
        r = subprocess.run(["bash", str(SCRIPT), "start"], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=BRINGUP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = ((e.stdout or b"") + (e.stderr or b"")).decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "") + (e.stderr or "")
        pytest.fail(f"{SCRIPT.name} start did not finish in {BRINGUP_TIMEOUT_S} s:\n{_tail(out)}", pytrace=False)
    if r.returncode != 0:
        pytest.fail(f"{SCRIPT.name} start failed (exit {r.returncode}) on a machine that should run it:\n"
                    f"{_tail(r.stdout + r.stderr)}", pytrace=False)
    yield {"partition": "debug", "bringup_s": time.monotonic() - t0, "output": r.stdout}
    if not was_up and os.environ.get("LORABENCH_SLURM_KEEP") != "1":
        subprocess.run(["bash", str(SCRIPT), "stop"], stdin=subprocess.DEVNULL, capture_output=True, timeout=300)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(*cmd: str, timeout: float = 30, check: bool = True) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def scontrol(*args: str) -> str:
    return _run("scontrol", *args)


def sbatch(script_text: str, **opts) -> str:
    """Submit `script_text` as a batch job and return its job id.

    Options become sbatch flags: `time="1"` -> `--time=1`, `cpus_per_task=1` -> `--cpus-per-task=1`,
    `requeue=True` -> `--requeue`. A script without a shebang gets `#!/bin/bash`. Unless given, `chdir`
    is a fresh temporary directory (where the script is written too) and `output` is `slurm-%j.out` there.
    """
    if not script_text.startswith("#!"):
        script_text = "#!/bin/bash\n" + script_text
    workdir = Path(opts.pop("chdir", None) or tempfile.mkdtemp(prefix="lb-sbatch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="job-", suffix=".sh", dir=workdir)
    with os.fdopen(fd, "w") as f:
        f.write(script_text)
    opts.setdefault("output", str(workdir / "slurm-%j.out"))
    flags = [f"--chdir={workdir}"]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value not in (False, None):
            flags.append(f"{flag}={value}")
    out = _run("sbatch", "--parsable", *flags, path)
    return out.strip().split(";")[0]        # "<id>[;cluster]"


def squeue_state(job_id: str) -> str | None:
    """The live state from slurmctld (PENDING, RUNNING, COMPLETING, ...), None once it no longer lists the job."""
    out = _run("squeue", "-h", "-j", str(job_id), "-t", "all", "-o", "%T", check=False).split()
    return out[0] if out else None


def sacct_states(job_id: str) -> list[str]:
    """Every run of the job as accounting recorded it, oldest first (a requeued job: REQUEUED, ..., latest)."""
    out = _run("sacct", "-n", "-P", "-X", "-D", "-j", str(job_id), "-o", "State", check=False)
    # "CANCELLED by 0" -> "CANCELLED"
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def sacct_state(job_id: str) -> str | None:
    states = sacct_states(job_id)
    return states[-1] if states else None


def job_state(job_id: str) -> str | None:
    """squeue's state while slurmctld lists the job as active, else the latest state in accounting."""
    s = squeue_state(job_id)
    if s and s not in TERMINAL:
        return s
    return sacct_state(job_id) or s


def wait_state(job_id: str, states, timeout: float = 60, source: str = "auto", poll: float = 0.5) -> str:
    """Wait until the job is in one of `states` (a name or a collection) and return that state.

    source: "auto" (job_state), "sacct" (accounting only: what submitit sees) or "squeue". Fails at once
    when the job reaches a terminal state that was not asked for, with `scontrol show job` in the message.
    """
    wanted = {states} if isinstance(states, str) else set(states)
    get = {"auto": job_state, "sacct": sacct_state, "squeue": squeue_state}[source]
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        s = get(job_id)
        if not seen or seen[-1] != s:
            seen.append(str(s))
        if s in wanted:
            return s
        done = s in TERMINAL and (source != "auto" or squeue_state(job_id) in (None, *TERMINAL))
        if done or time.monotonic() > deadline:
            why = f"ended {s}" if done else f"still {s} after {timeout:.0f} s"
            raise AssertionError(f"job {job_id} {why}, waiting for {sorted(wanted)}; states seen: "
                                 f"{' -> '.join(seen)}\n{_describe(job_id)}")
        time.sleep(poll)


def _describe(job_id: str) -> str:
    return _run("scontrol", "show", "job", str(job_id), check=False).strip() or "(scontrol no longer knows it)"


def requeue(job_id: str) -> None:
    """`scontrol requeue`: SIGTERM now, SIGKILL after KillWait (30 s), then PENDING until released."""
    scontrol("requeue", str(job_id))


def release_requeued(job_id: str, timeout: float = 90) -> float:
    """Make a requeued job eligible at once; returns the seconds waited for it to be held.

    SLURM holds a requeued job (PENDING, reason BeginTime) for cred_expire+1 s (120 s by default, 20 s on
    the local cluster) counted from when its previous run ENDED. `scontrol update StartTime=now` lifts the
    hold, but only once the job is PENDING: issued while the old run is still COMPLETING (e.g. a job that
    ignores SIGTERM until KillWait's SIGKILL), the hold is set again when the run ends. So this waits for
    PENDING/BeginTime (a job that ignores SIGTERM needs KillWait, 30 s), then updates. Call it after
    `requeue()`, or after a job requeued itself (submitit on timeout/preemption); works on array tasks
    ("<id>_<n>").
    """
    t0 = time.monotonic()
    seen: list[str] = []
    while True:
        out = _run("squeue", "-h", "-j", str(job_id), "-t", "all", "-o", "%T %r", check=False).split()
        state, reason = (out + [None, None])[:2]
        if not seen or seen[-1] != state:
            seen.append(str(state))
        if state == "PENDING" and reason == "BeginTime":
            _lift_hold(job_id)
            return time.monotonic() - t0
        if state in TERMINAL or state is None or time.monotonic() - t0 > timeout:
            raise AssertionError(f"job {job_id} never held for requeue within {timeout:.0f} s; states seen: "
                                 f"{' -> '.join(seen)}\n{_describe(job_id)}")
        time.sleep(0.25)


def _lift_hold(job_id: str) -> None:
    # slurmd revoked the old run's credential at the requeue, stamped in whole seconds, and rejects any
    # credential of that job not newer ("Job credential revoked": the new run FAILS at once). The hold
    # exists for that; lifted in the same second as the requeue, the restart would be launched with a
    # credential from that second. So let the clock pass the next whole second first.
    time.sleep(1.1)
    scontrol("update", f"JobId={job_id}", "StartTime=now")


def release_held_jobs(name: str) -> None:
    """Lift the requeue hold of every job named `name` that waits for its BeginTime (for runs that requeue
    themselves, as submitit does at a time limit); call it in a polling loop."""
    out = _run("squeue", "-h", "-n", name, "-t", "PENDING", "-o", "%i %r", check=False)
    for job, reason in (line.split() for line in out.splitlines()):
        if reason == "BeginTime":
            _lift_hold(job)
