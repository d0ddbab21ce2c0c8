"""Weight-only inits: LoRA (kaiming / gaussian), PiSSA, OLoRA via peft, which implements them faithfully;
MiLoRA (not in peft) computed here.

rsLoRA and DoRA are flags (adapter.use_rslora, adapter.use_dora) that compose with any init.
Checked against huggingface/peft `src/peft/tuners/lora/layer.py` (`reset_lora_parameters`, `pissa_init`,
`olora_init`) at 5d602fd, sufenlp/MiLoRA `svd_init.py` (`initialize_lora_layer`, mode "min") at 4740756,
and ALGORITHMS.md §1, §5.

Under quant=nf4 the inits that decompose W run on the full-precision model and the residual base is
quantized afterwards (lorabench/quantize.py, QPiSSA as peft recommends): `quantize_after_init=True`.
"""
import torch

from lorabench.adapters import InitMethod, register
from lorabench.adapters.common import ADAPTER, attach, base_weight, lora_config, lora_layers, offset_base, set_lora


def lora(model, adapter_cfg, batches, ctx):
    """A ~ kaiming-uniform(a=sqrt(5)), B = 0 (peft `init_lora_weights=True`, as microsoft/LoRA)."""
    return attach(model, lora_config(model, adapter_cfg, ctx.task_type, True))


def lora_gaussian(model, adapter_cfg, batches, ctx):
    """A ~ N(0, 1/r), B = 0 (peft `init_lora_weights="gaussian"`)."""
    return attach(model, lora_config(model, adapter_cfg, ctx.task_type, "gaussian"))


def pissa(model, adapter_cfg, batches, ctx):
    """A, B from the top-r singular triplets of W; W_res = W - s*B*A (GraphPKU/PiSSA uses peft's code).

    options.niter=k uses peft's fast SVD (`pissa_niter_k`, torch.svd_lowrank), which draws random
    projections: we seed it with options.svd_seed so re-initialization is reproducible.
    """
    from lorabench.adapters import options

    opts = options(adapter_cfg)
    mode = "pissa" if opts["niter"] is None else f"pissa_niter_{int(opts['niter'])}"
    with torch.random.fork_rng():
        torch.manual_seed(opts["svd_seed"])
        return attach(model, lora_config(model, adapter_cfg, ctx.task_type, mode))


def olora(model, adapter_cfg, batches, ctx):
    """Q, R = qr(W); B = Q[:, :r], A = R[:r]; W_res = W - s*B*A (peft `olora_init`)."""
    return attach(model, lora_config(model, adapter_cfg, ctx.task_type, "olora"))


@torch.no_grad()
def milora(model, adapter_cfg, batches, ctx):
    """The minor (last r) singular triplets of W: S /= s, B = U sqrt(S), A = sqrt(S) Vh, W_res = W - s*B*A.

    As sufenlp/MiLoRA svd_init.py (full torch.linalg.svd of W in fp32). The official code divides by
    alpha/r with alpha hard-wired to r (its scripts also set lora_alpha = r); we divide by the layer's own
    scaling (rsLoRA aware), which is the same at alpha = r and keeps W_res + s*B*A == W for any alpha.
    """
    model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, True))
    for _, layer in lora_layers(model):
        r, s = layer.r[ADAPTER], layer.scaling[ADAPTER]
        U, S, Vh = torch.linalg.svd(base_weight(layer), full_matrices=False)
        root = (S[-r:] / s).sqrt()
        set_lora(layer, A=root[:, None] * Vh[-r:], B=U[:, -r:] * root)
        offset_base(layer)
    return model


# quantize_after_init: these read W in full precision, so under quant=nf4 the residual is quantized after them.
register(InitMethod("lora", lora, supports_4bit=True))
register(InitMethod("lora_gaussian", lora_gaussian, supports_4bit=True))
register(InitMethod("pissa", pissa, defaults={"niter": None, "svd_seed": 0}, mutates_base=True,
                    supports_4bit=True, quantize_after_init=True))
register(InitMethod("olora", olora, mutates_base=True, supports_4bit=True, quantize_after_init=True))
register(InitMethod("milora", milora, mutates_base=True, supports_4bit=True, quantize_after_init=True))
