"""Several processes: with 2 CPU processes (gloo) every rank ends with the identical adapter, equal to one
process over the union of the batches. The launch flags are the ones that really start two ranks on CPU
(OFFLINE_ASSETS.md: `--cpu` or a MULTI_CPU config silently run one process)."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import CONFIGS, ROOT, compose
from dist_worker import GRADIENTS, init_state
from lorabench import adapters

DATA_DRIVEN = sorted(p.stem for p in (CONFIGS / "adapter").glob("*.yaml")
                     if adapters.REGISTRY[compose(f"adapter={p.stem}").adapter.init].data_driven)
CHECKED = [GRADIENTS, *DATA_DRIVEN, "pissa_niter_4"]


def projector(m: torch.Tensor, rows: bool) -> torch.Tensor:
    """Onto the row (or column) space of m: the part of an adapter that does not depend on singular-vector signs."""
    m = m.double() if rows else m.double().T
    return m.T @ torch.linalg.pinv(m @ m.T) @ m


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(ROOT / "tests" / "dist_worker.py"), str(out), *CHECKED]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-4000:]
    return out


@pytest.mark.parametrize("adapter", CHECKED)
def test_every_rank_ends_identical_and_equal_to_one_process(two_ranks, adapter):
    r0 = torch.load(two_ranks / f"{adapter}.rank0.pt")
    r1 = torch.load(two_ranks / f"{adapter}.rank1.pt")
    assert r0.keys() == r1.keys() and r0
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{adapter}: {k} differs between ranks"
    one = init_state(adapter)
    assert one.keys() == r0.keys()
    # The same math over the same batches; only the order of floating-point sums differs. G agrees to fp32
    # rounding; inits built from G's singular vectors are compared as subspaces and norms, since a rounding-level
    # change of G may flip a singular vector's sign or rotate vectors of near-equal singular values.
    for k in one:
        if "lora_A" in k or "lora_B" in k:
            rows = "lora_A" in k
            torch.testing.assert_close(projector(r0[k], rows), projector(one[k], rows), atol=1e-4, rtol=0,
                                       msg=lambda m: f"{adapter} {k}: {m}")
            torch.testing.assert_close(r0[k].norm(), one[k].norm(), rtol=1e-4, atol=1e-6)
        elif "base_layer" not in k:      # G itself
            torch.testing.assert_close(r0[k], one[k], atol=1e-6, rtol=1e-5, msg=lambda m: f"{adapter} {k}: {m}")
