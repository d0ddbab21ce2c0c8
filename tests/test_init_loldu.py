"""LoLDU (arXiv 2410.13618, SKDDJ/LoLDU minloldu/loldu.py @4fe87a0) on the real SmolLM2-135M: the LDU factors
multiply back to W, the adapter is the first r pivots' P L_r diag(D_r) U_r, W_res + adapter == W (output
unchanged), and only the diagonal and the scalar train."""
import pytest
import torch

from conftest import compose
from lorabench import adapters
from lorabench.adapters.common import lora_layers
from lorabench.adapters.loldu import ldu
from lorabench.adapters.middle import MiddleA
from lorabench.config import validate
from lorabench.errors import ConfigError

LAYERS = ["layers.0.self_attn.q_proj", "layers.15.mlp.down_proj", "layers.29.mlp.up_proj"]   # square, wide, tall


@pytest.fixture(scope="module")
def run(smol):
    cfg = smol.compose("loldu", f"adapter.target_modules=[{','.join(LAYERS)}]")
    base = smol.load()
    W = {n: m.weight.detach().clone() for n, m in base.named_modules() if n.endswith(tuple(LAYERS))}
    batch = {k: v[:, :24] for k, v in smol.batches[0].items() if k != "labels"}
    with torch.no_grad():
        before = base(**batch).logits
    model, _ = adapters.init_adapter(base, cfg.adapter)
    return cfg, model, W, batch, before


def test_ldu_factors_multiply_back_to_w(run):
    _, _, W, _, _ = run
    for w in W.values():
        P, L, D, U = ldu(w.double())
        k = min(w.shape)
        assert torch.equal(L.diagonal(), torch.ones(k, dtype=L.dtype)) and torch.equal(L, L.tril())
        torch.testing.assert_close(U.diagonal(), torch.ones(k, dtype=U.dtype)) and torch.equal(U, U.triu())
        torch.testing.assert_close(P @ L @ torch.diag(D) @ U, w.double(), atol=1e-12, rtol=0)


def test_adapter_is_the_first_r_pivots_and_the_residual_restores_w(run):
    cfg, model, W, _, _ = run
    r = cfg.adapter.r
    layers = lora_layers(model)
    assert len(layers) == 3
    for name, layer in layers:
        mid = layer.lora_A["default"]
        assert isinstance(mid, MiddleA) and mid.M.shape == (r,) and mid.scale.item() == 1.0
        P, L, D, U = ldu(W[name].double())
        B = layer.lora_B["default"].weight.double()
        torch.testing.assert_close(B, P @ L[:, :r], atol=1e-6, rtol=0)
        torch.testing.assert_close(mid.A.double(), U[:r], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mid.M.double(), D[:r], atol=1e-6, rtol=1e-5)
        s = layer.scaling["default"]
        adapter = s * B @ torch.diag(mid.M.double()) @ mid.A.double()
        W_res = layer.get_base_layer().weight.double()
        assert (W_res - W[name]).abs().max() > 1e-3                         # the base was changed
        torch.testing.assert_close(W_res + adapter, W[name].double(), atol=1e-5, rtol=0)


def test_only_the_diagonal_and_the_scalar_train(run):
    _, model, _, _, _ = run
    trainable = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 6
    assert {n.rsplit(".", 1)[1] for n in trainable} == {"M", "scale"}
    assert sum(torch.Size(s).numel() for s in trainable.values()) == 3 * (8 + 1)


def test_output_unchanged_at_init(run):
    _, model, _, batch, before = run
    with torch.no_grad():
        after = model(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_refusals_at_config_time():
    with pytest.raises(ConfigError, match="does not support a 4-bit base"):
        validate(compose("adapter=loldu", "quant=nf4"), check_shapes=False)
    with pytest.raises(ConfigError, match="use_dora=false"):
        validate(compose("adapter=loldu", "adapter.use_dora=true"))
    with pytest.raises(ConfigError, match="distributed=ddp"):
        validate(compose("adapter=loldu", "distributed=zero3"), check_shapes=False)
