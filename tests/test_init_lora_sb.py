"""LoRA-SB (arXiv 2411.19557, RaghavSinghal10/lora-sb @37b33d4) on SmolLM2 with real gsm8k batches: the initial
update s*B*R*A is the best rank-r approximation of the update estimate -lr*sign(G) from the shared gradient pass,
only R trains, W is unchanged and the model's output is that of W + [dW]_r."""
import types

import pytest
import torch

from conftest import compose, two_layers
from lorabench import adapters
from lorabench.adapters import lora_ga
from lorabench.adapters.common import base_weight, lora_layers
from lorabench.adapters.middle import MiddleA
from lorabench.config import validate
from lorabench.errors import ConfigError

LAYERS = ["layers.0.self_attn.q_proj", "layers.0.self_attn.v_proj", "layers.1.mlp.down_proj"]
LR = 2e-4


@pytest.fixture(scope="module")
def smol_sb(smol):
    cfg = smol.compose("lora_sb", f"adapter.target_modules=[{','.join(LAYERS)}]", f"trainer.lr={LR}")
    base = two_layers(smol.load(cfg))   # real weights, first two decoder layers: the pass 15x cheaper
    W = {n: m.weight.detach().clone() for n, m in base.named_modules() if n.endswith(tuple(LAYERS))}
    batch = {k: v[:, :24] for k, v in smol.batches[0].items() if k != "labels"}
    seen = {}
    real = lora_ga.layer_gradients

    def spy(*args, **kwargs):                        # keep the gradients the init saw: the shared pass
        seen.update({k: v.clone() for k, v in real(*args, **kwargs).items()})
        return {k: v.clone() for k, v in seen.items()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lora_ga, "layer_gradients", spy)
        model, report = adapters.init_adapter(base, cfg.adapter, smol.batches)
    return types.SimpleNamespace(cfg=cfg, W=W, G=seen, model=model, report=report, batch=batch)


def best_rank_r(m, r):
    U, S, Vh = torch.linalg.svd(m.double(), full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r], S


def test_initial_update_is_the_best_rank_r_approximation_of_the_update_estimate(smol_sb):
    layers = dict(lora_layers(smol_sb.model))
    assert sorted(layers) == sorted(f"model.{n}" for n in LAYERS) and len(smol_sb.G) == 3
    for name, layer in layers.items():
        mid = layer.lora_A["default"]
        assert isinstance(mid, MiddleA) and mid.M.shape == (8, 8)
        s = layer.scaling["default"]
        update = (s * layer.lora_B["default"].weight @ mid.M @ mid.A).double()
        dW = -LR * torch.sign(smol_sb.G[name])
        best, S = best_rank_r(dW, 8)
        assert S[7] > S[8] * 1.001                       # a well-defined rank-8 approximation
        torch.testing.assert_close(update, best, atol=1e-9, rtol=1e-5)
        # Eckart-Young: its error is the tail of the spectrum, and no other rank-8 update does better
        assert (dW.double() - update).norm().item() == pytest.approx(S[8:].square().sum().sqrt().item(), rel=1e-5)
        assert torch.equal(base_weight(layer), smol_sb.W[name])          # W unchanged


def test_only_r_trains(smol_sb):
    for _ in range(2):   # also after peft re-enables the adapter (set_adapter marks adapter modules trainable)
        trainable = {n: p.shape for n, p in smol_sb.model.named_parameters() if p.requires_grad}
        assert len(trainable) == 3 and all(n.endswith("lora_A.default.M") and s == (8, 8) for n, s in trainable.items())
        with smol_sb.model.disable_adapter():
            pass


def test_output_is_that_of_w_plus_the_rank_r_update(smol_sb, smol):
    ref = two_layers(smol.load())
    with torch.no_grad():
        for name, m in ref.named_modules():
            if name in smol_sb.W:
                m.weight.add_(best_rank_r(-LR * torch.sign(smol_sb.G[name]), 8)[0].float())
        expected = ref(**smol_sb.batch).logits
        got = smol_sb.model(**smol_sb.batch).logits
        with smol_sb.model.disable_adapter():
            base = smol_sb.model(**smol_sb.batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - base).abs().max() > 1e-4                           # the init moved the function


def test_refusals_at_config_time():
    with pytest.raises(ConfigError, match="use_dora=false"):
        validate(compose("adapter=lora_sb", "adapter.use_dora=true"))
    with pytest.raises(ConfigError, match="distributed=ddp"):
        validate(compose("adapter=lora_sb", "distributed=zero2"), check_shapes=False)
    with pytest.raises(ConfigError, match="step_lr"):
        validate(compose("adapter=lora_sb", "adapter.options.step_lr=0"))
    validate(compose("adapter=lora_sb", "quant=nf4"), check_shapes=False)      # the gradient pass runs in 4-bit
    assert compose("adapter=lora_sb", "trainer.lr=3e-5").adapter.options.step_lr == 3e-5
