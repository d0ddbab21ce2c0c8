"""LoftQ (arXiv 2310.08659; peft utils/loftq_utils.py::loftq_init) on real SmolLM2-135M layers: equal to
peft's own function, its error properties, the base it leaves (quant=none: deq(Q); quant=nf4: Q itself),
and its config checks."""
import contextlib
from unittest import mock

import bitsandbytes as bnb
import pytest
import torch
from peft.utils.loftq_utils import loftq_init

from conftest import compose
from lorabench import adapters, models, quantize
from lorabench.adapters.common import base_weight, lora_layers
from lorabench.adapters.loftq import _loftq_layer
from lorabench.config import validate
from lorabench.errors import ConfigError

TARGETS = "adapter.target_modules=[layers.0.self_attn.q_proj,layers.15.mlp.down_proj,layers.29.self_attn.v_proj]"


@contextlib.contextmanager
def cuda_means_cpu():
    """peft 0.21's loftq_init hard-codes the "cuda" compute device: send those moves to the CPU instead,
    so that peft's own function runs here unchanged."""
    to = torch.Tensor.to

    def cpu(d):
        return "cpu" if str(d).startswith("cuda") else d

    def patched(self, *args, **kwargs):
        args = tuple(cpu(a) if isinstance(a, (str, torch.device)) else a for a in args)
        if "device" in kwargs:
            kwargs["device"] = cpu(kwargs["device"])
        return to(self, *args, **kwargs)
    with mock.patch.object(torch.Tensor, "to", patched):
        yield


def nf4(w):                                   # LoftQ's (and QLoRA's) quantizer: NF4, blocks of 64, fp32 absmax
    q = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=False, quant_type="nf4").to("cpu")
    return q, bnb.functional.dequantize_4bit(q.data, q.quant_state)


@pytest.fixture(scope="module", params=[1, 2], ids=["iters1", "iters2"])
def run(smol, request):
    cfg = smol.compose("loftq", TARGETS, f"adapter.options.iters={request.param}")
    base = smol.load()
    W = {n.removesuffix(".weight"): p.detach().clone() for n, p in base.named_parameters() if p.ndim == 2}
    model, report = adapters.init_adapter(base, cfg.adapter)
    return cfg, model, report, W


def test_equals_peft_loftq_init(run):
    cfg, model, report, W = run
    iters = cfg.adapter.options.iters
    assert len(lora_layers(model)) == 3 and report.extra["loftq"]["iters"] == iters
    for name, layer in lora_layers(model):
        with cuda_means_cpu():
            q, A, B = loftq_init(W[name], num_bits=4, reduced_rank=16, num_iter=iters)
        assert torch.equal(layer.get_base_layer().weight, q)                 # the base holds deq(Q)
        assert torch.equal(layer.lora_A["default"].weight, A) and torch.equal(layer.lora_B["default"].weight, B)


def test_int8_equals_peft():
    w = torch.randn(96, 192, generator=torch.Generator().manual_seed(0))
    with cuda_means_cpu():
        q, A, B = loftq_init(w, num_bits=8, reduced_rank=8, num_iter=2)
    q2, A2, B2 = _loftq_layer(w, 8, 8, 2)
    assert torch.equal(q, q2) and torch.equal(A, A2) and torch.equal(B, B2)


def test_error_below_plain_quantization(run):
    """||W - (deq(Q) + s*B*A)|| < ||W - deq(nf4(W))|| (QLoRA's error) on every layer; with 1 iteration Q is
    nf4(W) itself and B*A the best rank-r fit of the quantization error (Eckart-Young)."""
    cfg, model, _, W = run
    for name, layer in lora_layers(model):
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        assert layer.scaling["default"] == 1.0                                 # alpha = r: no scaling to divide out
        loftq_err = (W[name] - (base_weight(layer) + B @ A)).norm()
        _, deq = nf4(W[name])
        qlora_err = (W[name] - deq).norm()
        # Seen: 0.88 / 0.95 / 0.89 of QLoRA's error with 1 iteration; 0.81 / 0.89 / 0.79 with 5.
        assert loftq_err < 0.97 * qlora_err, (name, loftq_err / qlora_err)
        if cfg.adapter.options.iters == 1:
            assert torch.equal(base_weight(layer), deq)
            S = torch.linalg.svdvals(W[name] - deq)
            torch.testing.assert_close(loftq_err, S[16:].norm(), atol=0, rtol=1e-4)


def test_nf4_base_is_q():
    """quant=nf4: the base quantized after the init holds LoftQ's Q: bit-exact without double quantization,
    the same NF4 codes with it (its block absmax is then stored in 8 bits, as QLoRA stores any weight)."""
    for double in (False, True):
        cfg = compose("model=tiny_llama", "adapter=loftq", "quant=nf4", f"quant.double_quant={double}")
        base = models.load_model(cfg.model, quantize.at_load(cfg))
        assert quantize.at_load(cfg) is None                                  # loads in full precision
        base._lorabench_targets = list(cfg.model.target_modules)
        W = base.model.layers[1].mlp.down_proj.weight.detach().clone()
        model, _ = adapters.init_adapter(base, cfg.adapter)
        model = quantize.quantize_residual(model, cfg)
        layer = model.base_model.model.model.layers[1].mlp.down_proj
        assert isinstance(layer.get_base_layer(), bnb.nn.Linear4bit)
        q, deq = nf4(W)
        assert torch.equal(layer.get_base_layer().weight.data, q.data)       # the same 4-bit codes
        if not double:
            assert torch.equal(base_weight(layer), deq)
        else:
            torch.testing.assert_close(base_weight(layer), deq, atol=0, rtol=2e-2)


@pytest.mark.parametrize("overrides,expected", [
    (["adapter.options.bits=3"], "4 .NF4. or 8 .int8. bits"),
    (["adapter.options.iters=0"], "at least 1"),
    (["adapter.options.bits=8", "quant=nf4"], "set adapter.options.bits=4, or use quant=none"),
])
def test_config_checks(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        validate(compose("model=tiny_llama", "adapter=loftq", *overrides))
