"""A checkpoint written under one layout (strategy, process count) and a rerun under another: every checkpoint
carries the trainable state whole and by parameter name (cluster/portable_state.py), so DDP -> ZeRO-3,
ZeRO-3 (2 processes) -> 1 and ZeRO-2 -> DDP each resume to the uninterrupted curve; these used to fail on every
rerun until the folder was deleted by hand. A checkpoint without a portable state (written before it existed)
says so once and starts over. Slow: each case starts 3-4 DeepSpeed/torchrun processes on CPU."""
import json
import os
import subprocess
import sys

import pytest

from conftest import FAST, ROOT
from lorabench.cluster.distributed import free_port

pytest.importorskip("deepspeed", reason="DeepSpeed is installed by `make install`; this machine lacks it")
pytestmark = pytest.mark.slow

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
# 6 steps, killed at 3: the losses of steps 5 and 6 and the trained model's held-out loss depend on the Adam
# moments carried over, not only on the weights
COMMON = [*FAST, "trainer.max_steps=6", "trainer.eval_every=0", "task.train_size=24", "trainer.checkpoint_every=1"]


def launch(root, procs, batch, *overrides, stop_at=-1):
    """One run of global batch 4 (batch x processes x accumulation); returns its stderr."""
    cmd = [sys.executable, str(ROOT / "tests" / "run_worker.py"), str(stop_at), *COMMON,
           f"trainer.batch_size={batch}", f"trainer.grad_accum={4 // (batch * procs)}", *overrides,
           f"paths.root={root}"]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
               "--master_port", str(free_port()), *cmd[1:]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, cwd=ROOT)
    # an interrupted worker exits 3; torchrun reports a failed rank as 1
    assert p.returncode == 0 if stop_at < 0 else p.returncode in (1, 3), p.stderr[-4000:]
    return p.stderr


def record(root):
    [path] = (root / "results" / "runs").rglob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    launch(root, 1, 2)
    return record(root)


def assert_curve(rec, ref):
    assert rec["status"] == "success" and rec["run_id"] == ref["run_id"]
    assert [p["loss"] for p in rec["curve"]] == pytest.approx([p["loss"] for p in ref["curve"]], abs=1e-5)
    assert rec["loss"] == pytest.approx(ref["loss"], abs=1e-5)


def test_ddp_on_2_processes_resumes_on_1(tmp_path, reference):
    launch(tmp_path, 2, 1, stop_at=3)
    launch(tmp_path, 1, 2)
    rec = record(tmp_path)
    assert rec["resumed_from"] == 3 and rec["costs"]["num_processes"] == 1
    assert_curve(rec, reference)


LAYOUTS = [
    ((2, 1, "distributed=ddp"), (2, 1, "distributed=zero3")),     # DDP -> ZeRO-3 on 2 processes
    ((2, 1, "distributed=zero3"), (1, 2, "distributed=ddp")),     # ZeRO-3 (2) -> 1 process
    ((1, 2, "distributed=zero2"), (1, 2, "distributed=ddp")),     # ZeRO-2 -> DDP
]


@pytest.mark.parametrize("first,then", LAYOUTS)
def test_a_checkpoint_resumes_under_another_layout_to_the_same_curve(tmp_path, reference, first, then):
    launch(tmp_path, *first, stop_at=3)
    err = launch(tmp_path, *then)
    assert err.count("from its portable state") == 1, err[-3000:]
    rec = record(tmp_path)
    assert rec["resumed_from"] == 3
    assert_curve(rec, reference)


def test_a_checkpoint_without_a_portable_state_is_named_once_and_the_run_starts_over(tmp_path, reference):
    import torch

    launch(tmp_path, 2, 1, "distributed=ddp", stop_at=3)
    [step] = (tmp_path / "outputs").rglob("step-*")
    layout = json.loads((step / "layout.json").read_text())
    (step / "layout.json").write_text(json.dumps({k: v for k, v in layout.items() if k != "portable"}))
    state = torch.load(step / "state.pt", weights_only=False)
    torch.save({k: v for k, v in state.items() if k != "portable"}, step / "state.pt")   # as written before
    err = launch(tmp_path, 2, 1, "distributed=zero3")
    assert err.count("cannot resume under") == 1, err[-3000:]
    rec = record(tmp_path)
    assert rec["resumed_from"] is None
    assert_curve(rec, reference)
