"""The local SLURM cluster itself (slurm/local_cluster.sh): jobs run, end in the states accounting reports,
and a requeued job runs again. Under a minute when the cluster is up; skipped where it cannot run."""
import subprocess
import time

import pytest

from slurm_cluster import SCRIPT, release_requeued, requeue, sacct_states, sbatch, wait_state

pytestmark = pytest.mark.slurm


def test_bringup_is_idempotent(slurm_cluster):
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is up" in r.stdout and "starting" not in r.stdout, r.stdout
    assert took < 10, f"a second start took {took:.1f} s with everything running"


def test_job_completes_in_accounting(slurm_cluster, tmp_path):
    job = sbatch("echo hello from $SLURM_JOB_ID", chdir=tmp_path, time=2, job_name="lb-complete")
    assert wait_state(job, "COMPLETED", timeout=90, source="sacct") == "COMPLETED"
    assert (tmp_path / f"slurm-{job}.out").read_text().strip() == f"hello from {job}"


def test_cancelled_job_is_cancelled_in_accounting(slurm_cluster, tmp_path):
    job = sbatch("sleep 300", chdir=tmp_path, time=10, job_name="lb-cancel")
    wait_state(job, "RUNNING", timeout=90)
    subprocess.run(["scancel", job], check=True)
    assert wait_state(job, "CANCELLED", timeout=60, source="sacct") == "CANCELLED"


def test_requeued_job_runs_again(slurm_cluster, tmp_path):
    # The first run waits to be requeued; the second (SLURM_RESTART_COUNT=1) ends at once.
    log = tmp_path / "starts.log"
    job = sbatch(f'echo "start restart=${{SLURM_RESTART_COUNT:-0}}" >> {log}\n'
                 '[ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] && exit 0\n'
                 "sleep 300\n", chdir=tmp_path, time=10, job_name="lb-requeue")
    wait_state(job, "RUNNING", timeout=90)
    # RUNNING comes before the script starts: a requeue then would cancel a run that never wrote its line
    wait_for_line = time.monotonic()
    while not (log.exists() and log.read_text()) and time.monotonic() - wait_for_line < 60:
        time.sleep(0.2)
    t0 = time.monotonic()
    requeue(job)
    release_requeued(job, timeout=60)       # without it the job would wait cred_expire+1 s (here 21 s)
    wait_state(job, "COMPLETED", timeout=60, source="sacct")
    took = time.monotonic() - t0
    assert log.read_text().split("\n")[:2] == ["start restart=0", "start restart=1"]
    assert sacct_states(job) == ["REQUEUED", "COMPLETED"]
    # Eligible at once: well under the 21 s hold, only the scheduler's pass (sched_interval=5) remains.
    assert took < 15, f"requeue -> second run completed took {took:.1f} s"
