"""Sweeps on a real one-node SLURM cluster (slurm/local_cluster.sh), as a user runs them:
`python run.py -m ... hydra/launcher=slurm`. An array sweep writes its records and a resubmission skips them;
a raising and a cancelled member leave `.failed` records while the parent finishes; `scontrol requeue` and
a timeout resume from the checkpoint written when the signal arrived, with the uninterrupted run's curve;
a member whose time-outs are used up ends FAILED in accounting (not COMPLETED); a member that fails again
gets its own failure record, which the summary names (not the earlier sweep's); a 2-task member trains as 2
ranks."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import FAST, ROOT, run_cli
from slurm_cluster import release_held_jobs, release_requeued, requeue, sacct_states

pytestmark = pytest.mark.slurm

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
# A tiny CPU cluster: no GPUs, one CPU and a little memory per member; one thread per process, so that a
# resumed run and its uninterrupted reference compute bit for bit the same.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
         ]   # OMP_NUM_THREADS=1 reaches the jobs through the environment (SLURM exports it)


# For the requeue and timeout tests: every optimizer step sleeps (tests/slow_steps/sitecustomize.py), so that
# LONG's 100 steps take over 20 s on any machine and cannot end before the requeue or the time-limit signal.
SLOW = {"PYTHONPATH": str(ROOT / "tests" / "slow_steps"), "LORABENCH_TEST_STEP_SLEEP": "0.2"}


def sweep(root, name, *overrides, env=None):
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *FAST, *SLURM, f"hydra.launcher.name={name}",
           *overrides, f"paths.root={root}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, **(env or {})}, cwd=ROOT)


def finish(proc, timeout=420):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return err


def records(root):
    return [json.loads(p.read_text()) for p in sorted((root / "results" / "runs").rglob("*.json"))]


def jobs_named(name):
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines())


def wait_for(what, fn, timeout=180, poll=0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = fn()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def steps_done(root):
    """The highest training step any member's log shows (tqdm's 'n/total')."""
    best = 0
    for log in root.glob("outputs/sweeps/*/.submitit/*/*_log.err"):
        best = max([best, *map(int, re.findall(r"\| *(\d+)/\d+ \[", log.read_text(errors="replace")))])
    return best


def test_array_sweep_writes_records_and_resubmission_skips_them(slurm_cluster, tmp_path):
    err = finish(sweep(tmp_path, "lb_grid", "adapter.r=4,8", "seed=0,1"))
    recs = records(tmp_path)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"success"}
    assert "4 done, 0 skipped" in err
    assert len(list((tmp_path / "outputs" / "sweeps").iterdir())) == 1   # one directory per sweep
    assert all(oct(p.stat().st_mode & 0o044) == oct(0o044) for p in (tmp_path / "results").rglob("*.json"))
    err = finish(sweep(tmp_path, "lb_grid", "adapter.r=4,8", "seed=0,1"))
    assert "0 done, 4 skipped" in err                              # nothing was submitted again
    assert len(records(tmp_path)) == 4


def test_raising_and_cancelled_members_leave_failed_records(slurm_cluster, tmp_path):
    # members: (r=8, 4 steps) succeeds; (r=8, 3000 steps) is cancelled while it trains; r=100000 raises twice
    proc = sweep(tmp_path, "lb_cancel", "adapter.r=8,100000", "trainer.max_steps=4,3000")
    running = wait_for("the long member to train", lambda: steps_done(tmp_path) >= 2 and jobs_named("lb_cancel"))
    long_member = next(j for j in running if j.endswith("_1"))
    subprocess.run(["scancel", long_member], check=True)
    err = finish(proc)
    recs = records(tmp_path)
    ok = [r for r in recs if r["status"] == "success"]
    failed = {(r["config"]["adapter"]["r"], r["config"]["trainer"]["max_steps"]): r for r in recs if r["status"] == "failed"}
    assert len(ok) == 1 and ok[0]["config"]["trainer"]["max_steps"] == 4
    assert set(failed) == {(8, 3000), (100000, 4), (100000, 3000)}
    assert "CANCELLED" in failed[(8, 3000)]["error"]
    assert "ConfigError" in failed[(100000, 4)]["error"]
    assert "1 done, 0 skipped (already done), 3 failed" in err


# no periodic checkpoint: a resumed run can only have resumed from the one written at the signal
LONG = ["trainer.max_steps=100", "trainer.checkpoint_every=0", "trainer.eval_every=0"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of LONG, outside SLURM."""
    root = tmp_path_factory.mktemp("reference")
    p = run_cli(*FAST, *LONG, f"paths.root={root}", env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    [rec] = records(root)
    return rec


def assert_resumed_like(rec, ref):
    assert rec["status"] == "success" and rec["run_id"] == ref["run_id"]
    assert rec["resumed_from"] and 0 < rec["resumed_from"] < rec["steps"]
    assert [p["loss"] for p in rec["curve"]] == [p["loss"] for p in ref["curve"]]


def test_requeued_member_resumes_from_the_signal_checkpoint(slurm_cluster, tmp_path, reference):
    proc = sweep(tmp_path / "sweep", "lb_requeue", *LONG, env=SLOW)
    [job] = wait_for("training", lambda: steps_done(tmp_path / "sweep") >= 5 and jobs_named("lb_requeue"))
    requeue(job)
    release_requeued(job)
    finish(proc)
    [rec] = records(tmp_path / "sweep")
    assert_resumed_like(rec, reference)


def test_timed_out_member_is_requeued_and_resumes(slurm_cluster, tmp_path, reference):
    # a 1-minute limit with USR2 40 s before it: each slot trains ~10-15 s (SLOW: under 60 steps), checkpoints
    # at the signal and is requeued by submitit, until the run is done
    proc = sweep(tmp_path / "sweep", "lb_timeout", *LONG, "hydra.launcher.timeout_min=1",
                 "hydra.launcher.signal_delay_s=40", "hydra.launcher.max_num_timeout=5", env=SLOW)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 600:   # lift SLURM's hold on each requeue
        release_held_jobs("lb_timeout")
        time.sleep(1)
    finish(proc, timeout=60)
    [rec] = records(tmp_path / "sweep")
    assert_resumed_like(rec, reference)


def test_two_task_member_trains_as_two_ranks(slurm_cluster, tmp_path):
    finish(sweep(tmp_path, "lb_ranks", "hydra.launcher.tasks_per_node=2", "trainer.batch_size=1", "seed=0,1"))
    recs = records(tmp_path)
    assert len(recs) == 2 and {r["status"] for r in recs} == {"success"}    # one record per member, not per rank
    for r in recs:
        assert r["costs"]["num_processes"] == 2 and r["global_batch"] == 2
        assert len(r["rank_checksums"]) == 2 and len(set(r["rank_checksums"])) == 1   # identical adapters


def test_member_whose_time_outs_are_used_up_fails_in_accounting(slurm_cluster, tmp_path):
    # max_num_timeout=0: the first USR2 (40 s before the 1-minute limit) checkpoints, submitit refuses to
    # requeue ("timed-out too many times"); run.main records that, and the job must end FAILED
    err = finish(sweep(tmp_path, "lb_timeout_out", *LONG, "hydra.launcher.timeout_min=1",
                       "hydra.launcher.signal_delay_s=40", "hydra.launcher.max_num_timeout=0", env=SLOW), timeout=300)
    [rec] = records(tmp_path)
    assert rec["status"] == "failed" and "timed-out too many times" in rec["error"]
    [job] = [p.name for p in tmp_path.glob("outputs/sweeps/*/.submitit/*") if p.name[0].isdigit()]
    states = sacct_states(job.split("_")[0])
    assert states and "COMPLETED" not in states, states
    assert "0 done, 0 skipped (already done), 1 failed" in err


def test_a_member_failing_again_gets_its_own_record_in_the_summary(slurm_cluster, tmp_path):
    from conftest import compose
    from lorabench.run import record_failure

    older = record_failure(compose(*FAST, "trainer.max_steps=3000", root=tmp_path), {},
                           RuntimeError("job 31_1 (FAILED): an earlier sweep"), world=1)
    proc = sweep(tmp_path, "lb_again", "trainer.max_steps=3000")
    [job] = wait_for("the member to train", lambda: steps_done(tmp_path) >= 2 and jobs_named("lb_again"))
    subprocess.run(["scancel", job], check=True)
    err = finish(proc)
    new = [p for p in (tmp_path / "results").rglob("*.failed*.json") if p != older]
    assert len(new) == 1 and "CANCELLED" in json.loads(new[0].read_text())["error"]
    assert f"failed #0: {new[0]}" in err and str(older) not in err
