"""LoRA-One on SmolLM2 with real gsm8k batches: s*B*A is a rank-r gradient step, W unchanged, loss goes down."""
import types

import pytest
import torch

from conftest import compose
from lorabench import adapters, models
from lorabench.adapters import lora_ga
from lorabench.adapters.common import base_weight, lora_layers
from lorabench.config import validate
from lorabench.errors import ConfigError

LAYERS = ["layers.0.self_attn.q_proj", "layers.0.self_attn.v_proj", "layers.5.mlp.down_proj"]


@pytest.fixture(scope="module")
def smol_one(smol):
    cfg = smol.compose("lora_one", f"adapter.target_modules=[{','.join(LAYERS)}]")
    base = smol.load(cfg)
    W = {n: m.weight.detach().clone() for n, m in base.named_modules() if n.endswith(tuple(LAYERS))}
    seen = {}
    real = lora_ga.layer_gradients

    def spy(*args, **kwargs):                        # keep the gradients the init saw
        seen.update({k: v.clone() for k, v in real(*args, **kwargs).items()})
        return {k: v.clone() for k, v in seen.items()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lora_ga, "layer_gradients", spy)
        model, report = adapters.init_adapter(base, cfg.adapter, smol.batches, losses=True)
    return types.SimpleNamespace(cfg=cfg, W=W, G=seen, model=model, report=report, batches=smol.batches)


def test_update_is_the_scaled_best_rank_r_approximation_of_minus_g(smol_one):
    layers = dict(lora_layers(smol_one.model))
    assert sorted(layers) == sorted(f"model.{n}" for n in LAYERS)
    r, gamma, s = 8, 128, 16 / 8 ** 0.5              # paper setting: rsLoRA, alpha=16, r=8, gamma=128
    for name, layer in layers.items():
        A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        assert layer.scaling["default"] == pytest.approx(s)
        U, S, Vh = torch.linalg.svd(-smol_one.G[name].double(), full_matrices=False)
        best = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
        step = (s * B @ A).double()
        torch.testing.assert_close(step, s / (gamma * S[0]) * best, atol=1e-7, rtol=1e-4)
        # B and A carry sqrt(S_r/S_0)/sqrt(gamma) each: balanced column/row norms
        torch.testing.assert_close(B.norm(dim=0), A.norm(dim=1))
        torch.testing.assert_close(B.norm(dim=0).double(), (S[:r] / S[0] / gamma).sqrt(), atol=1e-6, rtol=1e-4)
        assert torch.equal(base_weight(layer), smol_one.W[name])  # no offset: W unchanged


def test_loss_goes_down_on_the_init_batches(smol_one):
    extra = smol_one.report.extra
    with torch.no_grad():                            # recomputed here: the mean per-batch loss, eval mode
        after = sum(smol_one.model(**b).loss.item() for b in smol_one.batches) / len(smol_one.batches)
        with smol_one.model.disable_adapter():
            before = sum(smol_one.model(**b).loss.item() for b in smol_one.batches) / len(smol_one.batches)
    assert extra["loss_before"] == pytest.approx(before, rel=1e-5)
    assert extra["loss_after"] == pytest.approx(after, rel=1e-5)
    assert after < before
    # one gradient step: to first order the loss drops by <G, -s*B*A> = s/(gamma*S_0) * sum(S[:r]^2) per layer
    s, gamma = 16 / 8 ** 0.5, 128
    predicted = sum(s / (gamma * S[0]) * S[:8].square().sum()
                    for S in (torch.linalg.svdvals(g.double()) for g in smol_one.G.values())).item()
    assert before - after == pytest.approx(predicted, rel=0.05)   # measured 2.0530 -> 2.0143: 0.0387 vs 0.0391
    assert extra["grad_batches_per_process"] == 4


def tiny(*overrides):
    cfg = compose("model=tiny_llama", "adapter=lora_one", *overrides)
    torch.manual_seed(0)
    base = models.load_model(cfg.model, cfg.quant)
    base._lorabench_targets = list(cfg.model.target_modules)
    return cfg, base


def test_rerun_is_bit_identical(smol):
    runs = []
    for seed in (1, 2):
        cfg, base = tiny("adapter.target_modules=[q_proj,down_proj]")
        torch.manual_seed(seed)
        model, _ = adapters.init_adapter(base, cfg.adapter, smol.batches[:2])
        runs.append({k: v.clone() for k, v in model.state_dict().items() if "lora_" in k})
    assert len(runs[0]) == 4 * 2 and all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_dora_magnitude_is_rebuilt_from_the_new_weight(smol):
    cfg, base = tiny("adapter.use_dora=true", "adapter.target_modules=[q_proj,down_proj]")
    model, _ = adapters.init_adapter(base, cfg.adapter, smol.batches[:1])
    for _, layer in lora_layers(model):
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        W = base_weight(layer) + layer.scaling["default"] * B @ A
        torch.testing.assert_close(layer.lora_magnitude_vector["default"].weight, W.norm(dim=1))


def test_bad_gamma_fails_at_config_time():
    with pytest.raises(ConfigError, match="stable_gamma"):
        validate(compose("adapter=lora_one", "adapter.options.stable_gamma=0"))


def test_exact_top_where_the_sketch_covers_half_the_layer_equals_svd_lowrank():
    from lorabench.adapters.decompose import seeded_svd_lowrank
    from lorabench.adapters.lora_one import NITER, Q, top_svds

    def decaying(m, n, seed):   # a gradient-like spectrum: the top-8 subspace is well defined
        return torch.randn(m, n, generator=torch.Generator().manual_seed(seed)) * 0.97 ** torch.arange(float(n))

    for g in (decaying(1536, 576, 0), decaying(576, 1536, 2), decaying(576, 576, 4)):   # SmolLM2's shapes
        U, S, V = top_svds([g], 8, seed=0)[0]                                 # 576 > q = 512: the exact top 8
        Ul, Sl, Vl = seeded_svd_lowrank(g, q=Q, niter=NITER, seed=0)
        torch.testing.assert_close(S, Sl[:8], rtol=1e-5, atol=0)
        best, low = U * S @ V.T, Ul[:, :8] * Sl[:8] @ Vl[:, :8].T
        assert (best - low).norm() / best.norm() < 1e-5
        torch.testing.assert_close(U.T @ U, torch.eye(8), atol=1e-5, rtol=0)   # orthonormal, both sides
        torch.testing.assert_close(V.T @ V, torch.eye(8), atol=1e-5, rtol=0)
    wide = decaying(2 * Q + 8, 2 * Q + 1, 1)                      # wider than 2q: the official path, unchanged
    Ul, Sl, Vl = seeded_svd_lowrank(wide, Q, NITER, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(top_svds([wide], 8, seed=3)[0], (Ul[:, :8], Sl[:8], Vl[:, :8])))
