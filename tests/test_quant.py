"""The 4-bit (NF4) base: in-place quantization equals transformers' 4-bit loading; QPiSSA's error to W is
below QLoRA's on real SmolLM2 layers; estimating through a 4-bit base equals the dequantized fp32 model;
an offset re-quantizes; the policy (which inits load in 4-bit, which quantize after) and its config errors;
and 4-bit models train."""
import bitsandbytes as bnb
import pytest
import torch
from torch import nn

from conftest import compose
from lorabench import adapters, models, quantize
from lorabench.adapters.common import attach, base_weight, lora_config, lora_layers, offset_base, set_lora
from lorabench.adapters.gradients import layer_gradients
from lorabench.config import validate
from lorabench.errors import ConfigError

TARGETS = "adapter.target_modules=[layers.0.self_attn.q_proj,layers.15.mlp.down_proj,layers.29.self_attn.v_proj]"


def tiny(*overrides):
    cfg = compose("model=tiny_llama", *overrides)
    model = models.load_model(cfg.model, quantize.at_load(cfg))
    model._lorabench_targets = list(cfg.model.target_modules)
    return cfg, model


def batches(n=2, bs=2, seq=12):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 1000, (bs, seq), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return out


def dequantized_copy(model4):
    """The fp32 model whose linear weights are the 4-bit model's dequantized weights."""
    cfg = compose("model=tiny_llama")
    ref = models.load_model(cfg.model)
    ref._lorabench_targets = list(cfg.model.target_modules)
    with torch.no_grad():
        for name, mod in model4.named_modules():
            if isinstance(mod, bnb.nn.Linear4bit):
                ref.get_submodule(name).weight.copy_(base_weight_of(mod))
    return ref


def base_weight_of(linear4bit):
    from peft.utils.integrations import dequantize_module_weight
    return dequantize_module_weight(linear4bit).float()


def _lin(w):                                  # a plain nn.Linear holding w, for quantize._linear4bit
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight = nn.Parameter(w.clone(), requires_grad=False)
    return lin


def test_quantize_base_equals_transformers_4bit_loading(tmp_path):
    cfg, fp = tiny()
    fp.save_pretrained(tmp_path)
    loaded = type(fp).from_pretrained(tmp_path, quantization_config=models.quantization_config(compose("quant=nf4").quant))
    ours = quantize.quantize_base(fp, compose("quant=nf4").quant)
    four = {n for n, m in loaded.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert four == {n for n, m in ours.named_modules() if isinstance(m, bnb.nn.Linear4bit)} and len(four) == 14
    assert type(ours.lm_head) is nn.Linear and ours.is_loaded_in_4bit
    for name in four:
        a, b = loaded.get_submodule(name), ours.get_submodule(name)
        assert torch.equal(a.weight.data, b.weight.data)                      # identical packed NF4 codes
        assert torch.equal(base_weight_of(a), base_weight_of(b))              # and double-quantized absmax
        assert a.compute_dtype == b.compute_dtype == torch.float32


def test_qpissa_error_below_qlora(smol):
    """||W - (deq(nf4(W_res)) + s*B*A)|| < ||W - deq(nf4(W))|| on real SmolLM2 layers for PiSSA (the
    principal part stays in full precision), the reason to quantize the residual after the init; OLoRA
    gains less, MiLoRA nothing (it keeps the minor part in full precision)."""
    q = compose("quant=nf4").quant
    for adapter in ("pissa", "olora", "milora"):
        cfg = smol.compose(adapter, TARGETS, "adapter.r=16", "adapter.alpha=16")
        base = smol.load()
        W = {n.removesuffix(".weight"): p.detach().clone() for n, p in base.named_parameters() if p.ndim == 2}
        model, _ = adapters.init_adapter(base, cfg.adapter)
        for name, layer in lora_layers(model):
            A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
            w_res = base_weight(layer)
            ours = (W[name] - (base_weight_of(quantize._linear4bit(_lin(w_res), q)) + layer.scaling["default"] * B @ A)).norm()
            qlora = (W[name] - base_weight_of(quantize._linear4bit(_lin(W[name]), q))).norm()
            # Seen (r=16): PiSSA 0.54 / 0.94 / 0.91 of QLoRA's error, OLoRA 0.72 / 0.97 / 0.95, MiLoRA
            # 1.00 / 1.00 / 0.99 (its residual keeps W's principal part, so its quantization error is QLoRA's).
            bound = {"pissa": 0.95, "olora": 0.98, "milora": 1.01}[adapter]
            assert ours < bound * qlora, (adapter, name, float(ours / qlora))


def test_qpissa_path_rebuilds_a_qlora_model():
    """quant=nf4 + PiSSA: full-precision load, init, then the residual base in 4-bit under peft's own
    bitsandbytes LoRA layers, the adapter unchanged and the output close to the full-precision init's."""
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    cfg, base = tiny("adapter=pissa", "quant=nf4")
    assert quantize.at_load(cfg) is None and quantize.after_init(cfg)
    ids = batches(1)[0]
    model, _ = adapters.init_adapter(base, cfg.adapter)
    with torch.no_grad():
        fp_logits = model(**ids).logits
    A0 = {n: layer.lora_A["default"].weight.detach().clone() for n, layer in lora_layers(model)}
    w_res = {n: base_weight(layer) for n, layer in lora_layers(model)}
    model = quantize.quantize_residual(model, cfg)
    layers = lora_layers(model)
    assert len(layers) == 14 and all(isinstance(layer, LoraLinear4bit) for _, layer in layers)
    assert model.peft_config["default"].init_lora_weights == "pissa"
    for n, layer in layers:
        assert torch.equal(layer.lora_A["default"].weight, A0[n])
        torch.testing.assert_close(base_weight(layer), w_res[n], atol=0.2 * w_res[n].abs().max().item(), rtol=0)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {n for n, p in model.named_parameters() if "lora_" in n}
    with torch.no_grad():
        q_logits = model(**ids).logits
    assert (q_logits - fp_logits).abs().max() < 0.1 * fp_logits.abs().max()


def test_gradients_through_4bit_equal_the_dequantized_model():
    """layer_gradients on a 4-bit base == on the fp32 model holding its dequantized weights (fp32 compute).
    Found identical here (also on SmolLM2 with 2 real batches: max relative difference 0.0)."""
    cfg, q = tiny("quant=nf4")
    ref = dequantized_copy(q)
    data = batches()
    gq = layer_gradients(attach(q, lora_config(q, cfg.adapter, "CAUSAL_LM")), data)
    gf = layer_gradients(attach(ref, lora_config(ref, cfg.adapter, "CAUSAL_LM")), data)
    assert set(gq) == set(gf) and len(gq) == 14
    for name in gf:
        torch.testing.assert_close(gq[name], gf[name], atol=1e-6, rtol=1e-5)


def test_offset_base_requantizes():
    """offset_base on a Linear4bit: the layer stays 4-bit, holding exactly nf4(deq(W) - s*B*A)."""
    cfg, q = tiny("quant=nf4")
    model = attach(q, lora_config(q, cfg.adapter, "CAUSAL_LM"))
    name, layer = lora_layers(model)[3]
    g = torch.Generator().manual_seed(0)
    set_lora(layer, torch.randn(8, layer.in_features, generator=g) * 0.1,
             torch.randn(layer.out_features, 8, generator=g) * 0.1)
    w = base_weight(layer)
    target = w - layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    offset_base(layer)
    assert isinstance(layer.get_base_layer(), bnb.nn.Linear4bit)
    assert layer.get_base_layer().weight.__class__.__name__ == "Params4bit"
    expected = base_weight_of(quantize._linear4bit(_lin(target.detach()), cfg.quant))
    assert torch.equal(base_weight(layer), expected)
    err = (base_weight(layer) - target).norm() / target.norm()
    assert 0.01 < err < 0.15                                                   # NF4's own error, no more


def test_policy():
    R = adapters.REGISTRY
    after = {n for n, m in R.items() if m.quantize_after_init}
    assert {"pissa", "olora", "milora", "loftq"} <= after
    assert not ({"lora", "lora_gaussian", "lora_ga", "lora_ga_peft", "lora_one", "gora", "eva"} & after)
    assert all(R[n].supports_4bit for n in after)
    cfg = compose("adapter=lora", "quant=nf4")
    assert quantize.at_load(cfg) is cfg.quant and not quantize.after_init(cfg)
    assert quantize.at_load(compose("adapter=pissa", "quant=nf4")) is None
    assert quantize.at_load(compose("adapter=pissa")) is None


def test_config_errors():
    with pytest.raises(ConfigError, match="cannot train a 4-bit base: use quant=none"):
        validate(compose("adapter=full_ft", "quant=nf4"))
    with pytest.raises(ConfigError, match="bitsandbytes 4-bit types"):
        validate(compose("quant=nf4", "quant.quant_type=int4"))
    with pytest.raises(ConfigError, match="quant.compute_dtype='fp8': use one of float32, bfloat16, float16"):
        validate(compose("quant=nf4", "quant.compute_dtype=fp8"))
    unsupported = [n for n, m in adapters.REGISTRY.items() if m.uses_adapter and not m.supports_4bit]
    for name in unsupported[:1]:
        with pytest.raises(ConfigError, match="does not support a 4-bit base.*Use quant=none"):
            validate(compose(f"adapter.init={name}", "quant=nf4", "adapter.init_batches=1"))
    validate(compose("model=tiny_llama", "adapter=pissa", "quant=nf4"))   # tiny random models may be 4-bit now


def train_steps(model, data, steps=6, lr=1e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**data[0]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("adapter", ["pissa", "corda", "lora_ga", "lora_one", "lora_sb", "nlora"])
def test_4bit_model_trains(adapter):
    """A weight init (quantized after) and gradient inits (estimated through the 4-bit base): finite, falling loss."""
    cfg, base = tiny(f"adapter={adapter}", "quant=nf4", "adapter.init_batches=2", "adapter.init_batch_size=2")
    data = batches()
    model, _ = adapters.init_adapter(base, cfg.adapter, data)
    model = quantize.quantize_residual(model, cfg)
    assert all(isinstance(layer.get_base_layer(), bnb.nn.Linear4bit) for _, layer in lora_layers(model))
    losses = train_steps(model, data)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.05, losses


def test_models_and_quantize_do_not_import_each_other():
    """quantize is the lower layer (models calls it to quantize a loaded base); it imports nothing of models."""
    import ast
    from pathlib import Path

    import lorabench.quantize as q

    names = set()
    for node in ast.walk(ast.parse(Path(q.__file__).read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    assert not any(n == "lorabench.models" or n.startswith("lorabench.models.") for n in names), names
