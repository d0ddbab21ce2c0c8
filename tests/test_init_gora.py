"""GoRA (arXiv 2502.12171) on the real SmolLM2-135M: rank allocation within the budget, the init's defining
property s·B·A = -lr·√(n_in/r_i)·G·P_A, a descent step, reproducibility, reload, and config-time checks."""
import json
import math

import pytest
import torch
from peft import PeftModel

from conftest import compose
from lorabench import adapters, models
from lorabench.adapters.common import lora_layers
from lorabench.adapters.gora import allocate_ranks
from lorabench.adapters.gradients import mean_loss
from lorabench.config import validate
from lorabench.errors import ConfigError

TARGETS = "adapter.target_modules=[q_proj,v_proj]"    # 60 layers of two shapes (576x576, 192x576): fast


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def batches(smol):
    """The fixture's batches with a supervised token (at max_length=64 the others are all prompt: no loss)."""
    return [b for b in smol.batches if (b["labels"][:, 1:] != -100).any()]


@pytest.fixture(scope="module")
def run(smol):
    """One GoRA init on SmolLM2 with the scripts' options, and the reference G from plain autograd."""
    cfg = smol.compose("gora", TARGETS)
    base = smol.load()
    for b in batches(smol):                        # G = mean over batches of dL/dW, independent of gradients.py
        base(**b).loss.backward()
    G = {n.removesuffix(".weight"): p.grad / len(batches(smol)) for n, p in base.named_parameters()
         if p.grad is not None and n.endswith(("q_proj.weight", "v_proj.weight"))}
    W = {n: p.detach().clone() for n, p in base.named_parameters() if n.removesuffix(".weight") in G}
    base.zero_grad(set_to_none=True)
    model, report = adapters.init_adapter(base, cfg.adapter, batches(smol), losses=True)
    return cfg, model, report, G, W


def test_ranks_in_range_and_recorded(run):
    _, model, report, G, W = run
    for name, imp in report.extra["importance"].items():          # union_mean: mean |W ⊙ G|
        assert imp == pytest.approx((W[name + ".weight"] * G[name]).abs().mean().item(), rel=1e-4)
    ranks = report.extra["ranks"]
    assert len(ranks) == 60 and set(ranks) == set(G)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in G.values())
    assert all(4 <= k <= 32 for k in ranks.values())
    assert report.ranks == ranks                                  # what the model carries
    assert model.peft_config["default"].rank_pattern == ranks     # what adapter_config.json will carry
    assert len(set(ranks.values())) > 3                           # importance really differs across layers
    print("ranks", sorted(ranks.values()), "budget", report.extra["budget"], "allocated", report.extra["allocated"])


def test_budget_conserved_before_clipping(run):
    """Σ rank_i·F_i ∈ (b - ΣF - N, b + N] unclipped; the clipped ranks are exactly clip(unclipped)."""
    _, model, report, G, _ = run
    imp = report.extra["importance"]
    features = {n: sum(g.shape) for n, g in G.items()}
    for func, f in ((None, lambda x: x), ("sqrt", math.sqrt)):
        free, budget = allocate_ranks(imp, features, 8, 0, 10**9, "round", func)
        F = {n: f(v) for n, v in features.items()}
        assert budget == 8 * sum(F.values())
        spent = sum(free[n] * F[n] for n in free)
        assert budget - sum(F.values()) - len(F) < spent <= budget + len(F)
    free, budget = allocate_ranks(imp, features, 8, 0, 10**9)
    assert report.extra["ranks"] == {n: min(max(k, 4), 32) for n, k in free.items()}
    # trainable parameters: the budget is that of a uniform rank-8 LoRA on the same layers
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == report.extra["allocated"] and budget == 8 * sum(features.values()) == 460_800
    assert abs(trainable / budget - 1) < 0.1      # clipping moves it; measured 474,240 vs 460,800 (+2.9%)


def test_update_is_the_projected_gradient_step(run):
    """s_i·B·A = -lr·√(n_in/r_i)·G·Aᵀ(AAᵀ)⁻¹A (fp64 reference), W unchanged."""
    cfg, model, _, G, W = run
    lr = cfg.adapter.options.lr
    for name, layer in model.base_model.model.named_modules():
        if name not in G:
            continue
        A = layer.lora_A["default"].weight.double()
        B = layer.lora_B["default"].weight.double()
        r, n_in = A.shape
        assert layer.scaling["default"] == pytest.approx(16 / math.sqrt(r))      # rsLoRA with the layer's rank
        P = A.T @ torch.linalg.solve(A @ A.T, A)
        expected = -lr * math.sqrt(n_in / r) * G[name].double() @ P
        got = layer.scaling["default"] * B @ A
        assert ((got - expected).norm() / expected.norm()).item() < 1e-5
        assert torch.equal(layer.base_layer.weight, W[name + ".weight"])


def test_descent_sign_lowers_the_loss(run, smol):
    """The paper's −B lowers the loss on the init batches; HEAD's +B (B negated, the same A) raises it."""
    _, model, report, _, _ = run
    before, after = report.extra["loss_before"], report.extra["loss_after"]
    assert after < before - 0.05, (before, after)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.neg_()
        head = mean_loss(model, batches(smol), None)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.neg_()
    assert head > before, (before, head)
    print(f"loss before {before:.4f}, after (descent) {after:.4f}, after (official_head) {head:.4f}")


def test_saved_adapter_reloads_without_the_init(run, smol, tmp_path):
    _, model, report, _, _ = run
    ids = smol.batches[0]["input_ids"]
    expected = logits(model, ids)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["rank_pattern"] == report.extra["ranks"] and saved["use_rslora"] is True
    reloaded = PeftModel.from_pretrained(smol.load(), tmp_path)
    torch.testing.assert_close(logits(reloaded, ids), expected, atol=1e-5, rtol=1e-5)


def tiny_init(*overrides, seed=0):
    from test_export import random_batches

    cfg = compose("model=tiny_llama", "adapter=gora", *overrides)
    torch.manual_seed(0)
    base = models.load_model(cfg.model, cfg.quant)
    base._lorabench_targets = list(cfg.model.target_modules)
    torch.manual_seed(seed)                           # a different global RNG state must not matter
    return adapters.init_adapter(base, cfg.adapter, random_batches(), losses=True)


def lora_weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_seeded_and_sign_option():
    a, b = (lora_weights(tiny_init(seed=s)[0]) for s in (1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    head = lora_weights(tiny_init("adapter.options.sign=official_head")[0])
    for k in a:
        torch.testing.assert_close(head[k], a[k] if "lora_A" in k else -a[k])
    other = lora_weights(tiny_init("adapter.options.seed=1")[0])
    first_A = next(k for k in a if "lora_A" in k)
    assert not torch.equal(other[first_A], a[first_A])


def test_fixed_scaling_option():
    """dynamic_scaling=false: every layer keeps the rank-r scaling α/√r (official scale_rank = r_ref), and
    B absorbs it: s·B·A is the same update as with per-layer scaling."""
    dyn, _ = tiny_init()
    fixed, report = tiny_init("adapter.options.dynamic_scaling=false")
    assert len(set(report.ranks.values())) > 1
    layers = dict(lora_layers(dyn))
    for name, layer in lora_layers(fixed):
        assert layer.scaling["default"] == pytest.approx(16 / math.sqrt(8))
        delta = [m.scaling["default"] * m.lora_B["default"].weight @ m.lora_A["default"].weight
                 for m in (layer, layers[name])]
        torch.testing.assert_close(delta[0], delta[1], atol=1e-6, rtol=1e-4)


def test_4bit_base():
    """QLoRA as the official LinearWithGoRA(LinearWithQLoRA): importance on the dequantized W, W stays 4-bit."""
    validate(compose("model=tiny_llama", "adapter=gora", "quant=nf4", "task=gsm8k_mini"))
    model, report = tiny_init("quant=nf4")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(layer.base_layer.weight).__name__ == "Params4bit"
    assert all(4 <= k <= 32 for k in report.ranks.values())
    assert report.extra["loss_after"] < report.extra["loss_before"]


@pytest.mark.parametrize("override,match", [
    ("adapter.options.importance=bogus", "importance='bogus' is unknown"),
    ("adapter.options.allocate=nearest", "allocate='nearest' is unknown"),
    ("adapter.options.sign=up", "sign='up' is unknown"),
    ("adapter.options.features_func=cube", "features_func='cube' is unknown"),
    ("adapter.options.min_rank=0", "0 < adapter.options.min_rank"),
    ("adapter.options.max_rank=6", "adapter.r <= adapter.options.max_rank"),
    ("adapter.options.max_rank=4096", "max_rank=4096 is too large"),
    ("adapter.use_dora=true", "use_dora=false"),
])
def test_bad_options_fail_at_config_time(override, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose("adapter=gora", "task=gsm8k_mini", override))
