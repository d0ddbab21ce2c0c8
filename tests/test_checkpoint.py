"""Checkpoints are whole or absent: a write cut short (a full disk) leaves the previous checkpoint as the one to
resume from and no folder that looks like a checkpoint."""
import errno

import pytest
import torch

from lorabench import checkpoint


@pytest.fixture
def setup():
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model, opt = acc.prepare(model, opt)
    return acc, model, opt, sched


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_partial_one(setup, tmp_path, monkeypatch):
    acc, model, opt, sched = setup
    first = checkpoint.save(tmp_path, model, opt, sched, 2, 10, [{"step": 2}], acc)
    assert checkpoint.latest(tmp_path) == first
    real = torch.save

    def full_disk(obj, f, *a, **k):
        if str(f).endswith("state.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(tmp_path, model, opt, sched, 4, 20, [{"step": 4}], acc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", first.name]   # the partial step 4 is gone
    assert checkpoint.latest(tmp_path) == first
    monkeypatch.setattr(torch, "save", real)
    step, tokens, curve = checkpoint.load(first, model, opt, sched, acc)
    assert (step, tokens) == (2, 10)
