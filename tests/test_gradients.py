"""The shared gradient estimator equals autograd's dL/dW averaged over batches."""
import pytest
import torch

from conftest import compose
from lorabench import models
from lorabench.adapters.common import attach, lora_config
from lorabench.adapters.gradients import dropout_free, layer_gradients, loss_before, mean_loss
from lorabench.run import TASK_TYPES


def batches(n=3, bs=2, seq=10):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 1000, (bs, seq), generator=g)
        mask = torch.ones_like(ids)
        mask[0, :3] = 0                       # some padding, as a left-padded batch has
        labels = ids.masked_fill(mask == 0, -100)
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def test_layer_gradients_equal_mean_weight_grad():
    cfg = compose("model=tiny_llama")
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    data = batches()
    losses = []
    for b in data:
        loss = base(**b).loss
        loss.backward()
        losses.append(loss.item())
    expected = {n.removesuffix(".weight"): p.grad / len(data) for n, p in base.named_parameters()
                if p.grad is not None and "proj" in n}
    base.zero_grad(set_to_none=True)
    model = attach(base, lora_config(base, cfg.adapter, "CAUSAL_LM"))
    stats = {}
    got = layer_gradients(model, data, stats=stats)
    assert stats["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)   # the pass's own mean loss
    assert set(got) == set(expected) and len(got) == 14
    for name, g in got.items():
        torch.testing.assert_close(g, expected[name], atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())          # nothing left behind
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)   # trainability restored


@pytest.mark.parametrize("name,free", [("tiny_llama", True), ("tiny_bert", False), ("tiny_t5", False)])
def test_loss_before_is_the_gradient_pass_loss_only_without_dropout(name, free):
    """A dropout-free model's gradient pass (train mode) saw the eval-mode loss: reused, no extra pass. With
    dropout the train-mode loss differs, so loss_before runs its own eval-mode pass."""
    cfg = compose(f"model={name}")
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    model = attach(base, lora_config(base, cfg.adapter, TASK_TYPES[cfg.model.kind]))
    assert dropout_free(model) is free
    if not free:
        return
    data, stats = batches(), {}
    layer_gradients(model, data, stats=stats)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    assert loss_before(model, data, stats) == stats["loss"] and not calls
    assert mean_loss(model, data) == pytest.approx(stats["loss"], rel=1e-6)
