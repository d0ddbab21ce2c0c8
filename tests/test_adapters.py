"""Defining properties of the peft-backed inits (issue 3 extends this to every method)."""
import pytest
import torch

from conftest import compose
from lorabench import adapters, models
from lorabench.adapters.common import attach, lora_config, lora_layers


def setup(adapter, *overrides):
    cfg = compose("model=tiny_llama", f"adapter={adapter}", *overrides)
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    base._lorabench_targets = list(cfg.model.target_modules)
    return cfg, base


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("adapter", ["lora", "lora_gaussian", "rslora", "dora", "pissa", "pissa_niter_4", "olora"])
def test_output_unchanged_at_init(adapter):
    cfg, base = setup(adapter)
    before = logits(base, IDS)
    model, report = adapters.init_adapter(base, cfg.adapter)
    torch.testing.assert_close(logits(model, IDS), before, atol=1e-4, rtol=1e-4)
    assert report.ranks and set(report.ranks.values()) == {cfg.adapter.r}
    assert len(report.ranks) == 2 * 7                     # 2 layers x 7 projections


def test_lora_b_is_zero():
    cfg, base = setup("lora")
    model, _ = adapters.init_adapter(base, cfg.adapter)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            assert torch.count_nonzero(p) == 0


def test_pissa_is_the_top_singular_subspace():
    cfg, base = setup("pissa")
    W = base.model.layers[0].mlp.up_proj.weight.detach().clone()
    model, _ = adapters.init_adapter(base, cfg.adapter)
    layer = model.base_model.model.model.layers[0].mlp.up_proj
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    s = layer.scaling["default"]
    torch.testing.assert_close(layer.base_layer.weight + s * B @ A, W, atol=1e-5, rtol=1e-5)
    U, S, Vh = torch.linalg.svd(W)
    r = cfg.adapter.r
    top = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
    torch.testing.assert_close(s * B @ A, top, atol=1e-4, rtol=1e-4)


def test_pissa_fast_svd_is_reproducible():
    runs = []
    for _ in range(2):
        cfg, base = setup("pissa_niter_4")
        torch.manual_seed(123 + len(runs))                 # a different global RNG state each time
        model, _ = adapters.init_adapter(base, cfg.adapter)
        runs.append(model.base_model.model.model.layers[1].self_attn.q_proj.lora_A["default"].weight.clone())
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("adapter", ["pissa", "olora"])
def test_equal_to_peft(adapter):
    """Computed here (the exact top-r triplets, a thin QR) rather than by peft: the same adapter product
    s*B*A and residual W as peft's own `pissa_init` / `olora_init`; OLoRA's A and B themselves, signs included."""
    cfg, base = setup(adapter)
    _, ref = setup(adapter)
    ours, _ = adapters.init_adapter(base, cfg.adapter)
    theirs = attach(ref, lora_config(ref, cfg.adapter, "CAUSAL_LM", adapter))
    pairs = list(zip(lora_layers(ours), lora_layers(theirs)))
    assert len(pairs) == 14
    for (name, a), (other, b) in pairs:
        assert name == other
        A, B = a.lora_A["default"].weight, a.lora_B["default"].weight
        A_ref, B_ref = b.lora_A["default"].weight, b.lora_B["default"].weight
        s = a.scaling["default"]
        torch.testing.assert_close(s * B @ A, s * B_ref @ A_ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.base_layer.weight, b.base_layer.weight, atol=1e-5, rtol=1e-4)
        if adapter == "olora":
            torch.testing.assert_close(A, A_ref, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(B, B_ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("adapter", ["pissa", "pissa_niter_4", "olora"])
def test_dora_with_a_decomposing_init_keeps_the_output(adapter):
    """DoRA's magnitude is rebuilt after A, B and W_res are set: ||W_res + s*B*A|| = ||W||, output unchanged."""
    cfg, base = setup(adapter, "adapter.use_dora=true")
    before = logits(base, IDS)
    model, _ = adapters.init_adapter(base, cfg.adapter)
    torch.testing.assert_close(logits(model, IDS), before, atol=1e-4, rtol=1e-4)
