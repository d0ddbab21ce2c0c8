"""MiCA (arXiv 2604.01694, peft 0.21.2 `init_lora_weights="mica"`) on the real SmolLM2-135M: B spans W's minor
left singular subspace and is frozen, A = 0 trains, W and the output are unchanged, and our init is peft's."""
import pytest
import torch
from peft import LoraConfig, get_peft_model

from lorabench import adapters
from lorabench.adapters.common import lora_layers
from lorabench.config import validate
from conftest import compose
from lorabench.errors import ConfigError

LAYERS = ["layers.0.self_attn.q_proj", "layers.15.mlp.down_proj", "layers.29.self_attn.v_proj"]   # 3 shapes
TARGETS = f"adapter.target_modules=[{','.join(LAYERS)}]"


@pytest.fixture(scope="module")
def run(smol):
    cfg = smol.compose("mica", TARGETS)
    base = smol.load()
    W = {n: m.weight.detach().clone() for n, m in base.named_modules() if n.endswith(tuple(LAYERS))}
    batch = {k: v[:, :24] for k, v in smol.batches[0].items()}
    with torch.no_grad():
        before = base(**batch).logits
    model, report = adapters.init_adapter(base, cfg.adapter)
    return cfg, model, report, W, batch, before


def test_b_is_the_frozen_minor_left_singular_subspace_and_a_is_zero(run):
    cfg, model, report, W, _, _ = run
    r = cfg.adapter.r
    layers = lora_layers(model)
    assert len(layers) == 3 and set(report.ranks.values()) == {r}
    for name, layer in layers:
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        U, S, _ = torch.linalg.svd(W[name].double(), full_matrices=False)
        assert S[-r - 1] > S[-r] * 1.0001                      # the minor subspace is well defined here
        P = B.double() @ B.double().T                          # B orthonormal: its projector
        torch.testing.assert_close(P, U[:, -r:] @ U[:, -r:].T, atol=1e-5, rtol=0)
        torch.testing.assert_close(B.T @ B, torch.eye(r), atol=1e-5, rtol=0)
        assert torch.equal(A, torch.zeros_like(A))
        assert not B.requires_grad and A.requires_grad           # only A trains
        assert torch.equal(layer.get_base_layer().weight, W[name])   # W unchanged
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 3 and all("lora_A" in n for n in trainable)


def test_output_unchanged_at_init(run):
    _, model, _, _, batch, before = run
    with torch.no_grad():
        after = model(**batch).logits
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_equals_peft_mica(run, smol):
    cfg, model, _, _, _, _ = run
    base = smol.load()
    ref = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=LAYERS, init_lora_weights="mica",
                                          task_type="CAUSAL_LM"))
    ours = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    theirs = ref.state_dict()
    assert len(ours) == 6 and all(torch.equal(v, theirs[k]) for k, v in ours.items())


def test_refusals_at_config_time():
    with pytest.raises(ConfigError, match="does not support a 4-bit base"):
        validate(compose("adapter=mica", "quant=nf4"), check_shapes=False)
    with pytest.raises(ConfigError, match="use_dora=false"):
        validate(compose("adapter=mica", "adapter.use_dora=true"))
