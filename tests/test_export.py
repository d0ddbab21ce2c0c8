"""Every init's saved adapter reloads with plain peft, without re-running the init; inits that change W
export a rank-2r LoRA for the unmodified base that reproduces the trained model."""
import pytest
import torch
from peft import PeftModel

from conftest import CONFIGS, compose
from lorabench import adapters, models
from lorabench.run import save_adapter, save_initial_adapter

ADAPTERS = sorted(p.stem for p in (CONFIGS / "adapter").glob("*.yaml") if p.stem != "full_ft")


def random_batches(n=4, bs=2, seq=12):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 1000, (bs, seq), generator=g)
        labels = ids.clone()
        labels[:, :4] = -100                      # a prompt, masked from the loss
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


IDS = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(2))


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def fresh_base(cfg):
    torch.manual_seed(0)
    return models.load_model(cfg.model)             # random test models are seeded: the same W every time


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_saved_adapter_reproduces_the_trained_model_on_the_original_base(adapter, tmp_path):
    cfg = compose("model=tiny_llama", f"adapter={adapter}", "adapter.init_batches=4", "adapter.r=4",
                  f"paths.root={tmp_path}")   # r=4: EVA needs rho*r tokens per batch
    base = fresh_base(cfg)
    base._lorabench_targets = list(cfg.model.target_modules)
    W = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    model, _ = adapters.init_adapter(base, cfg.adapter, random_batches())
    q0 = model.base_model.model.model.layers[0].self_attn.q_proj
    init_gap = W - (q0.get_base_layer().weight + q0.scaling["default"] * q0.lora_B["default"].weight
                    @ q0.lora_A["default"].weight).detach()   # zero for inits that offset W, but LoftQ
    init_dir = save_initial_adapter(model, cfg, tmp_path)
    assert (init_dir is not None) == adapters.REGISTRY[cfg.adapter.init].mutates_base

    with torch.no_grad():                            # stands in for training: move every adapter weight
        g = torch.Generator().manual_seed(3)
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    trained = logits(model)
    path = save_adapter(model, cfg, tmp_path, init_dir)

    original = fresh_base(cfg)
    torch.testing.assert_close(original.model.layers[0].self_attn.q_proj.weight, W)
    reloaded = PeftModel.from_pretrained(original, path)
    if cfg.adapter.init == "loftq":
        # LoftQ's base is its quantized Q, not W: the plain LoRA for W differs from the trained model by exactly
        # LoftQ's init error W - (Q + s*B0*A0), layer by layer.
        def merged(layer):
            return (layer.get_base_layer().weight + layer.scaling["default"] * layer.lora_B["default"].weight
                    @ layer.lora_A["default"].weight).detach()
        q1 = reloaded.base_model.model.model.layers[0].self_attn.q_proj
        assert init_gap.abs().max() > 1e-3
        torch.testing.assert_close(merged(q1) - merged(q0), init_gap, atol=1e-5, rtol=1e-4)
    else:
        if init_dir is not None:   # W_res + s*B0*A0 = W: the offset kept the output unchanged
            torch.testing.assert_close(init_gap, torch.zeros_like(W), atol=1e-5, rtol=0)
        torch.testing.assert_close(logits(reloaded), trained, atol=2e-4, rtol=2e-4)
    reloaded_w = reloaded.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    if cfg.adapter.init == "kasa":   # peft re-runs KaSA's deterministic truncation on load (no plain-LoRA export)
        torch.testing.assert_close(reloaded_w, q0.get_base_layer().weight)
        assert not torch.allclose(reloaded_w, W)
    else:   # loading did not re-run the init: the base weights under the adapter are the original ones
        torch.testing.assert_close(reloaded_w, W)
    if init_dir is not None:   # the rank-2r construction
        saved = reloaded.peft_config["default"]
        assert saved.init_lora_weights is True
        assert saved.r == 2 * cfg.adapter.r
