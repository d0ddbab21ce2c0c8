"""A terminated run (SIGTERM: `kill`, or SLURM's requeue, scancel and preemption) writes a checkpoint at the
end of the step it is in, exits without a failure record, and resumes from there to the uninterrupted curve."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import FAST, ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
RUN = [*FAST, "trainer.max_steps=30", "trainer.checkpoint_every=0", "trainer.eval_every=0"]


def start(root, log):
    cmd = [sys.executable, str(ROOT / "tests" / "run_worker.py"), "-1", *RUN, f"paths.root={root}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=ENV, cwd=ROOT)


def record(root):
    [path] = (root / "results" / "runs").rglob("*.json")
    return json.loads(path.read_text())


def test_sigterm_checkpoints_exits_and_resumes_exactly(tmp_path):
    log = tmp_path / "log.txt"
    proc = start(tmp_path / "b", log)
    t0 = time.monotonic()
    while not re.search(r"\| *([5-9]|\d\d)/30 \[", log.read_text(errors="replace")):
        assert proc.poll() is None and time.monotonic() - t0 < 300, log.read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    # the default action, after the checkpoint: killed by SIGTERM (under submitit, exit status 143)
    assert proc.wait(timeout=120) == -signal.SIGTERM, log.read_text()[-3000:]
    assert not (tmp_path / "b" / "results").exists()                  # no record, and no .failed one
    [latest] = (tmp_path / "b" / "outputs").rglob("checkpoint/latest")
    stopped = int(latest.read_text().split("-")[1])
    assert 5 <= stopped < 30

    for root in (tmp_path / "b", tmp_path / "a"):                      # resume, and the uninterrupted run
        assert start(root, tmp_path / "log2.txt").wait(timeout=600) == 0, (tmp_path / "log2.txt").read_text()[-3000:]
    resumed, full = record(tmp_path / "b"), record(tmp_path / "a")
    assert resumed["resumed_from"] == stopped and full["resumed_from"] is None
    assert [p["loss"] for p in resumed["curve"]] == [p["loss"] for p in full["curve"]]
