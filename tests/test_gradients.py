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


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_bert", "tiny_t5"])
def test_autograd_weight_grads_equal_the_activation_hooks(name, monkeypatch):
    """fp32 bases let autograd form dL/dW; half-precision and 4-bit bases take g^T x from hooks: the same G
    (dropout models too: both passes draw the same masks from the same seed)."""
    import lorabench.adapters.gradients as gradients

    cfg = compose(f"model={name}")
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    model = attach(base, lora_config(base, cfg.adapter, TASK_TYPES[cfg.model.kind]))
    data = batches()
    if cfg.model.kind == "seq_cls":
        data = [{**b, "labels": torch.tensor([0, 1])} for b in data]
    torch.manual_seed(1)
    native = layer_gradients(model, data)
    monkeypatch.setattr(gradients, "_autograd_can_form", lambda layers: False)
    torch.manual_seed(1)
    hooked = layer_gradients(model, data)
    assert set(native) == set(hooked)
    for n in native:
        torch.testing.assert_close(native[n], hooked[n], atol=1e-6, rtol=1e-4)


def test_conv1d_weights_give_out_by_in_gradients():
    """GPT-2's Conv1D stores W as in x out: G is still out x in, W.grad transposed."""
    from peft import LoraConfig
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                      attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0))
    data = batches()
    for b in data:
        base(**b).loss.backward()
    expected = {n.removesuffix(".weight"): p.grad.T / len(data) for n, p in base.named_parameters()
                if p.grad is not None and n.endswith(("c_attn.weight", "c_fc.weight"))}
    base.zero_grad(set_to_none=True)
    model = attach(base, LoraConfig(r=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True,
                                    task_type="CAUSAL_LM"))
    got = layer_gradients(model, data)
    assert set(got) == set(expected) and len(got) == 4
    for name, g in got.items():
        torch.testing.assert_close(g, expected[name], atol=1e-6, rtol=1e-4)
        assert g.is_contiguous()   # all_reduce across processes takes contiguous tensors only
