"""ALLoRA (arXiv 2410.09692; no official code): on the real SmolLM2-135M with a LoRA adapter, each row of A and B
steps lr / sqrt(||row||^2 + 1/eta^2) times Adam's direction (B's zero rows: lr * eta), other parameters AdamW;
adapter=allora is LoRA without dropout or scaling factor; training runs end to end."""
import pytest
import torch

from conftest import compose, two_layers
from lorabench import adapters
from lorabench.adapters.common import lora_layers
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.optimizers import make
from lorabench.optimizers.adam import EPS
from lorabench.optimizers.allora import row_coefficients

LAYERS = ["layers.1.self_attn.q_proj", "layers.1.mlp.up_proj"]


def test_per_row_step_sizes_follow_the_formula(smol):
    cfg = smol.compose("allora", f"adapter.target_modules=[{','.join(LAYERS)}]", "trainer.lr=1e-3")
    assert cfg.adapter.alpha == cfg.adapter.r and cfg.adapter.dropout == 0          # scaling-free, dropout-free
    model, _ = adapters.init_adapter(two_layers(smol.load()), cfg.adapter)   # real weights, 2 layers
    layers = [layer for _, layer in lora_layers(model)]
    with torch.no_grad():                              # B != 0 too, so its rows get distinct coefficients
        for layer in layers:
            layer.lora_B["default"].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
        layers[0].lora_B["default"].weight[:5] = 0     # and a few zero rows, as at LoRA's init
    model(**smol.batches[0]).loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    mats = [m for layer in layers for m in (layer.lora_A["default"].weight, layer.lora_B["default"].weight)]
    before = [m.detach().clone() for m in mats]
    grads = [m.grad.clone() for m in mats]
    opt = make(model, params, cfg.trainer, cfg.adapter)
    opt.step()
    eta, lr = 2.0, 1e-3
    for m, w0, g in zip(mats, before, grads):
        c = 1 / torch.sqrt(w0.square().sum(1, keepdim=True) + 1 / eta ** 2)        # the paper's coefficient
        torch.testing.assert_close(row_coefficients(w0, eta), c)
        expected = -lr * c * g / (g.abs() + EPS)         # Adam's first step: m^ = g, v^ = g^2
        torch.testing.assert_close(m.detach() - w0, expected, atol=1e-9, rtol=1e-4)
    B0 = layers[0].lora_B["default"].weight
    step = (B0.detach()[:5] - 0).abs().max(1).values   # zero rows step lr * eta (where the gradient is not tiny)
    assert torch.allclose(step, torch.full_like(step, lr * eta), rtol=1e-3)


@pytest.mark.slow   # two short runs, ~30 s
def test_lora_pro_and_allora_train_end_to_end(fast_cfg):
    from lorabench.run import run

    for name in ("lora_pro", "allora"):
        rec = run(fast_cfg(f"adapter={name}", "trainer.max_steps=4"))
        losses = [p["loss"] for p in rec["curve"]]
        assert all(torch.isfinite(torch.tensor(losses))) and rec["config"]["adapter"]["optimizer"] == name


def test_refusals_at_config_time():
    with pytest.raises(ConfigError, match="eta"):
        validate(compose("adapter=allora", "adapter.optimizer_options.eta=0"))
    with pytest.raises(ConfigError, match="unknown to allora"):
        validate(compose("adapter=allora", "+adapter.optimizer_options.beta=1"))
    with pytest.raises(ConfigError, match="plain-LoRA init"):
        validate(compose("adapter=kasa", "adapter.optimizer=allora"))
    with pytest.raises(ConfigError, match="LoRA\\+"):
        validate(compose("adapter=allora", "trainer.loraplus_lr_ratio=16"))
