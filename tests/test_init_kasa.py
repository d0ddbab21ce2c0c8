"""KaSA (arXiv 2412.06071, peft 0.21.2 KasaConfig) on the real SmolLM2-135M: W is truncated to rank k - r (its r
smallest singular components dropped), the model's output is exactly that of the truncated model, the update
s*B*diag(d)*A starts at 0 with B, A and d trained, our init is peft's, and training adds peft's regularizer."""
import types

import pytest
import torch
from peft import KasaConfig, LoraConfig, get_peft_model

from conftest import compose
from lorabench import adapters
from lorabench.adapters.common import lora_layers
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.regularizers import regularizer

LAYERS = ["layers.0.self_attn.q_proj", "layers.15.mlp.down_proj", "layers.29.self_attn.v_proj"]   # 3 shapes


@pytest.fixture(scope="module")
def run(smol):
    cfg = smol.compose("kasa", f"adapter.target_modules=[{','.join(LAYERS)}]")
    base = smol.load()
    W = {n: m.weight.detach().clone() for n, m in base.named_modules() if n.endswith(tuple(LAYERS))}
    batch = {k: v[:, :24] for k, v in smol.batches[0].items()}
    torch.manual_seed(5)
    model, _ = adapters.init_adapter(base, cfg.adapter)
    return types.SimpleNamespace(cfg=cfg, model=model, W=W, batch=batch)


def truncated(w, r):
    U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    k = S.numel() - r
    return (U[:, :k] * S[:k]) @ Vh[:k]


def test_base_is_the_rank_k_minus_r_truncation_and_the_update_starts_at_zero(run):
    r = run.cfg.adapter.r
    for name, layer in lora_layers(run.model):
        W_now = layer.get_base_layer().weight.double()
        torch.testing.assert_close(W_now, truncated(run.W[name], r), atol=3e-5, rtol=0)   # fp32 SVD
        # exactly the r smallest singular values are gone; the others are W's
        S, S_now = torch.linalg.svdvals(run.W[name].double()), torch.linalg.svdvals(W_now)
        torch.testing.assert_close(S_now[:-r], S[:-r], atol=5e-5, rtol=1e-4)
        assert S_now[-r:].max() < 1e-5 < 1e-3 < S[-r:].min()   # gone (fp32 rounding), and they were not
        B, A, d = layer.lora_B["default"].weight, layer.lora_A["default"].weight, layer.lora_diag["default"]
        assert torch.equal(B, torch.zeros_like(B)) and A.abs().sum() > 0 and d.abs().sum() > 0
        assert A.requires_grad and B.requires_grad and d.requires_grad and d.shape == (r,)


def test_output_is_the_truncated_models(run, smol):
    ref = smol.load()
    with torch.no_grad():
        for name, m in ref.named_modules():
            if name in run.W:
                m.weight.copy_(truncated(run.W[name], run.cfg.adapter.r).float())
        expected = ref(**run.batch).logits
        original = smol.load()(**run.batch).logits
        got = run.model(**run.batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - original).abs().max() > 1e-3          # the truncation changes the function, as intended


def test_equals_peft_kasa(run, smol):
    base = smol.load()
    torch.manual_seed(5)
    ref = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=LAYERS, task_type="CAUSAL_LM",
                                          kasa_config=KasaConfig(beta=1e-4, gamma=1e-3)))
    theirs = ref.state_dict()
    ours = run.model.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(v, theirs[k]) for k, v in ours.items())


def test_regularizer_is_kasa_eq_9_to_11(run):
    term = regularizer(run.model)
    with torch.no_grad():                                  # B = 0 at init: move it so every term is non-trivial
        for _, layer in lora_layers(run.model):
            layer.lora_B["default"].weight.normal_(generator=torch.Generator().manual_seed(0))
    expected = 0.0
    for _, layer in lora_layers(run.model):
        d, A, B = layer.lora_diag["default"], layer.lora_A["default"].weight, layer.lora_B["default"].weight
        eye = torch.eye(8)
        expected += 1e-4 * d.square().sum() + 1e-3 * ((B.T @ B - eye).norm() + (A @ A.T - eye).norm())
    assert term().item() == pytest.approx(expected.item(), rel=1e-5)
    assert regularizer(adapters.init_adapter(compose_tiny(), compose("model=tiny_llama").adapter)[0]) is None


def compose_tiny():
    from lorabench import models

    cfg = compose("model=tiny_llama")
    torch.manual_seed(0)
    base = models.load_model(cfg.model, None)
    base._lorabench_targets = list(cfg.model.target_modules)
    return base


def test_refusals_at_config_time():
    with pytest.raises(ConfigError, match="does not support a 4-bit base"):
        validate(compose("adapter=kasa", "quant=nf4"), check_shapes=False)
    with pytest.raises(ConfigError, match="at least one must remain"):
        validate(compose("model=tiny_llama", "adapter=kasa", "adapter.r=32"))
    with pytest.raises(ConfigError, match="beta"):
        validate(compose("adapter=kasa", "adapter.options.beta=-1"))


@pytest.mark.slow   # two short runs, ~25 s
def test_training_adds_the_regularizer_once_per_step(fast_cfg):
    """The loop's loss is unchanged (the logged loss is the task's), but the regularizer reaches the weights:
    with beta = gamma = 0 KaSA trains as its task loss alone, with them the trained weights differ."""
    from lorabench.run import run

    plain = run(fast_cfg("adapter=kasa", "adapter.options.beta=0", "adapter.options.gamma=0", "trainer.max_steps=3"))
    reg = run(fast_cfg("adapter=kasa", "adapter.options.beta=1", "adapter.options.gamma=1", "trainer.max_steps=3"))
    assert plain["curve"][0]["loss"] == reg["curve"][0]["loss"]          # the same first batch and init
    assert plain["rank_checksums"] != reg["rank_checksums"]
