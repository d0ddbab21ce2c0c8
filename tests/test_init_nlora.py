"""NLoRA / IntTune (arXiv 2502.14482, TracyGuo2001/NLoRA layer.py nlora_init @b66f88d) on the real SmolLM2-135M:
the factors are W's sampled columns, rows and their intersection; with middle=pinv they reproduce the Nyström
approximation C W_rr^+ R (exact on the sampled rows and columns); W is unchanged and the output is that of
W + s*C*N*R; NLoRA trains all three factors, IntTune only N."""
import pytest
import torch

from conftest import compose
from lorabench import adapters
from lorabench.adapters.common import lora_layers
from lorabench.adapters.middle import MiddleA
from lorabench.config import validate
from lorabench.errors import ConfigError

LAYERS = ["layers.0.self_attn.q_proj", "layers.15.mlp.down_proj", "layers.29.self_attn.v_proj"]
TARGETS = f"adapter.target_modules=[{','.join(LAYERS)}]"


def weights(model):
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if n.endswith(tuple(LAYERS))}


@pytest.fixture(scope="module")
def nlora(smol):
    base = smol.load()
    W = weights(base)
    model, _ = adapters.init_adapter(base, smol.compose("nlora", TARGETS).adapter)
    return model, W


def product(layer):
    mid = layer.lora_A["default"]
    return layer.scaling["default"] * layer.lora_B["default"].weight @ mid.M @ mid.A


def test_factors_are_the_nystrom_columns_rows_and_core(nlora):
    model, W = nlora
    for name, layer in lora_layers(model):
        mid, r = layer.lora_A["default"], 8
        assert isinstance(mid, MiddleA) and layer.scaling["default"] == 1.0      # official r = alpha = 8
        assert torch.equal(layer.lora_B["default"].weight, W[name][:, :r])
        assert torch.equal(mid.M, W[name][:r, :r]) and torch.equal(mid.A, W[name][:r, :])
        assert torch.equal(layer.get_base_layer().weight, W[name])             # W unchanged


def test_output_is_that_of_w_plus_the_adapter(nlora, smol):
    model, W = nlora
    batch = {k: v[:, :24] for k, v in smol.batches[0].items() if k != "labels"}
    ref = smol.load()
    with torch.no_grad():
        for name, layer in lora_layers(model):
            ref.get_submodule(name).weight.add_(product(layer))
        expected, got = ref(**batch).logits, model(**batch).logits
        with model.disable_adapter():
            base = model(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - base).abs().max() > 1e-3


def test_pinv_middle_reproduces_the_nystrom_approximation(smol):
    base = smol.load()
    W = weights(base)
    model, _ = adapters.init_adapter(base, smol.compose("nlora", TARGETS, "adapter.options.middle=pinv").adapter)
    for name, layer in lora_layers(model):
        w, r = W[name].double(), 8
        approx = product(layer).double()
        nystrom = w[:, :r] @ torch.linalg.pinv(w[:r, :r]) @ w[:r, :]
        torch.testing.assert_close(approx, nystrom, atol=1e-5, rtol=1e-4)
        # Nyström's defining property: exact on the sampled columns and rows (W_rr is invertible here)
        torch.testing.assert_close(approx[:, :r], w[:, :r], atol=1e-5, rtol=0)
        torch.testing.assert_close(approx[:r, :], w[:r, :], atol=1e-5, rtol=0)
        S = torch.linalg.svdvals(approx)
        assert S[r - 1] > 1e-3 * S[0] and S[r] < 1e-5 * S[0]            # rank r (up to fp32 rounding)


def test_nlora_trains_all_three_factors_and_inttune_only_the_middle(nlora, smol):
    model, _ = nlora
    trainable = {n.rsplit(".", 2)[0].rsplit(".", 1)[1] + "." + n.rsplit(".", 1)[1]
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A.M", "lora_A.A", "lora_B.weight"}   # names end in <factor>.default.<param>
    inttune, _ = adapters.init_adapter(smol.load(), smol.compose("nlora_inttune", TARGETS).adapter)
    names = [n for n, p in inttune.named_parameters() if p.requires_grad]
    assert len(names) == 3 and all(n.endswith("lora_A.default.M") for n in names)


def test_refusals_at_config_time():
    with pytest.raises(ConfigError, match="middle"):
        validate(compose("adapter=nlora", "adapter.options.middle=svd"))
    with pytest.raises(ConfigError, match="distributed=ddp"):
        validate(compose("adapter=nlora_inttune", "distributed=zero2"), check_shapes=False)
    validate(compose("adapter=nlora", "quant=nf4"), check_shapes=False)     # read from the dequantized W
