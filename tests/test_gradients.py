"""The shared gradient estimator equals autograd's dL/dW averaged over batches."""
import torch

from conftest import compose
from lorabench import models
from lorabench.adapters.common import attach, lora_config
from lorabench.adapters.gradients import layer_gradients


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
    for b in data:
        base(**b).loss.backward()
    expected = {n.removesuffix(".weight"): p.grad / len(data) for n, p in base.named_parameters()
                if p.grad is not None and "proj" in n}
    base.zero_grad(set_to_none=True)
    model = attach(base, lora_config(base, cfg.adapter, "CAUSAL_LM"))
    got = layer_gradients(model, data)
    assert set(got) == set(expected) and len(got) == 14
    for name, g in got.items():
        torch.testing.assert_close(g, expected[name], atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())          # nothing left behind
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)   # trainability restored
