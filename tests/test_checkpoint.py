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


def test_the_portable_state_of_the_plain_loop_continues_adamw_exactly():
    """plain_gather -> plain_scatter into a fresh model and optimizer: the next steps equal the original's."""
    import torch

    from lorabench.cluster import portable_state

    def make():
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        return m, torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)

    def step(m, opt, i):
        torch.manual_seed(100 + i)
        loss = m(torch.randn(5, 4)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    a, opt_a = make()
    for i in range(3):
        step(a, opt_a, i)
    named = dict(a.named_parameters())
    saved = portable_state.plain_gather(named, opt_a, {n: p.detach().clone() for n, p in named.items()})
    assert saved["step"] == 3 and set(saved["moments"]) == set(named)
    b, opt_b = make()
    opt_b.param_groups[0]["lr"] = 0.5   # the scatter restores the group's rate too
    portable_state.plain_scatter(saved, dict(b.named_parameters()), opt_b)
    for i in range(3, 5):
        step(a, opt_a, i)
        step(b, opt_b, i)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
