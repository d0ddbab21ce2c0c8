"""MiLoRA (arXiv 2406.09044, sufenlp/MiLoRA svd_init.py @4740756) on the real SmolLM2-135M: the adapter is
the minor (last r) singular subspace of W, W_res + s·B·A == W, and the model's output is unchanged."""
import pytest
import torch

from lorabench import adapters
from lorabench.adapters.common import lora_layers

# Three real layers of SmolLM2's three shapes (576x576, 576x1536, 192x576): a full SVD each, fast.
TARGETS = "adapter.target_modules=[layers.0.self_attn.q_proj,layers.15.mlp.down_proj,layers.29.self_attn.v_proj]"


def projector(M):                               # onto the column space of M: sign/rotation free
    Q, _ = torch.linalg.qr(M)
    return Q @ Q.T


@pytest.fixture(scope="module", params=["adapter.alpha=8", "adapter.alpha=32"])   # s = 1 (the paper's) and 4
def run(smol, request):
    cfg = smol.compose("milora", TARGETS, request.param)
    base = smol.load()
    W = {n.removesuffix(".weight"): p.detach().clone() for n, p in base.named_parameters() if p.ndim == 2}
    batch = {k: v[:, :24] for k, v in smol.batches[0].items()}
    with torch.no_grad():
        before = base(**batch).logits
    model, report = adapters.init_adapter(base, cfg.adapter)
    return cfg, model, report, W, batch, before


def test_adapter_is_the_minor_singular_subspace(run):
    cfg, model, report, W, _, _ = run
    r = cfg.adapter.r
    layers = lora_layers(model)
    assert len(layers) == 3 and set(report.ranks.values()) == {8}
    for name, layer in layers:
        A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        s = layer.scaling["default"]
        U, S, Vh = torch.linalg.svd(W[name], full_matrices=False)
        torch.testing.assert_close(projector(B), projector(U[:, -r:]), atol=1e-4, rtol=0)
        torch.testing.assert_close(projector(A.T), projector(Vh[-r:].T), atol=1e-4, rtol=0)
        minor = U[:, -r:] @ torch.diag(S[-r:]) @ Vh[-r:]
        torch.testing.assert_close(s * B @ A, minor, atol=1e-5, rtol=1e-4)        # S was divided by s
        # Its singular values are W's r smallest (PiSSA takes the r largest).
        torch.testing.assert_close(torch.linalg.svdvals(s * B @ A)[:r], S[-r:], atol=1e-5, rtol=1e-4)


def test_residual_plus_adapter_is_w_and_output_unchanged(run):
    _, model, _, W, batch, before = run
    for name, layer in lora_layers(model):
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        W_res = layer.get_base_layer().weight
        assert not torch.allclose(W_res, W[name])                                 # the base was changed
        torch.testing.assert_close(W_res + layer.scaling["default"] * B @ A, W[name], atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        after = model(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_registered_as_a_base_mutating_init_that_quantizes_after():
    m = adapters.REGISTRY["milora"]
    assert m.mutates_base and m.supports_4bit and m.quantize_after_init and not m.defaults
