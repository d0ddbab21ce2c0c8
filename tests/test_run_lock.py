"""One run id, one trainer: two identical runs started together train once (the second waits for the first and
returns its record), and a claim dies with the process that held it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import FAST, ROOT
from lorabench.cluster import run_lock

HOLD = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, b"host=h pid=%d slurm_job=-" % os.getpid(), 0)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def holder(path, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_held_claim_makes_the_next_wait_and_names_the_holder(tmp_path):
    p = holder(tmp_path / run_lock.FILE, 1.5)
    said = []
    t0 = time.monotonic()
    claim = run_lock.Claim(tmp_path, None, said.append, poll=0.1)
    assert claim.waited and time.monotonic() - t0 > 1.0
    assert f"pid={p.pid}" in said[0] and "waiting" in said[0]
    claim.release()
    p.wait()


def test_a_killed_holder_leaves_no_stale_claim(tmp_path):
    p = holder(tmp_path / run_lock.FILE, 60)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    claim = run_lock.Claim(tmp_path, None, print, poll=0.1)
    assert not claim.waited
    claim.release()
    again = run_lock.Claim(tmp_path, None, print, poll=0.1)   # released: this process takes it again at once
    assert not again.waited
    again.release()


@pytest.mark.slow   # ~100 s on 2 busy cores: two full runs side by side
def test_two_identical_runs_started_together_train_once(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "tests" / "slow_steps"), "LORABENCH_TEST_STEP_SLEEP": "0.3"}
    cmd = [sys.executable, str(ROOT / "run.py"), *FAST, "trainer.max_steps=10", "trainer.checkpoint_every=1",
           f"paths.root={tmp_path}"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").rglob("*.json")]
    assert len(recs) == 1 and recs[0]["status"] == "success" and recs[0]["resumed_from"] is None
    waited = [e for _, e in outs if "is being trained by another process" in e]
    assert len(waited) == 1 and "already done by the run this one waited for" in waited[0]
