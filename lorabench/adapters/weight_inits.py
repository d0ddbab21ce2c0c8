"""Weight-only inits: LoRA (kaiming / gaussian) via peft, which implements them faithfully; PiSSA and OLoRA
with peft's math, computed here faster (the top-r triplets / a thin QR instead of a full SVD / QR);
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
from lorabench.adapters.common import (ADAPTER, attach, base_weight, lora_config, lora_layers, offset_base,
                                       refresh_dora, set_lora)
from lorabench.adapters.decompose import exact_top, svd_device


def lora(model, adapter_cfg, batches, ctx):
    """A ~ kaiming-uniform(a=sqrt(5)), B = 0 (peft `init_lora_weights=True`, as microsoft/LoRA)."""
    return attach(model, lora_config(model, adapter_cfg, ctx.task_type, True))


def lora_gaussian(model, adapter_cfg, batches, ctx):
    """A ~ N(0, 1/r), B = 0 (peft `init_lora_weights="gaussian"`)."""
    return attach(model, lora_config(model, adapter_cfg, ctx.task_type, "gaussian"))


@torch.no_grad()
def pissa(model, adapter_cfg, batches, ctx):
    """A, B from the top-r singular triplets of W; W_res = W - s*B*A (peft `pissa_init`, which GraphPKU/PiSSA
    uses): S /= s, A = sqrt(S) V^T, B = U sqrt(S).

    Computed here rather than by peft because peft takes a full SVD of every W to keep r of its triplets:
    the exact top-r triplets (decompose.exact_top) are the same subspace, several times faster. The sign of a
    triplet may differ from peft's (B A, W_res and training are the same; tests/test_adapters.py).
    options.niter=k is peft's own fast SVD (`pissa_niter_k`: torch.svd_lowrank(W, q=r, niter=k) per layer;
    batching the layers measured slower), its random projections seeded with options.svd_seed so
    re-initialization is reproducible.
    """
    from lorabench.adapters import options

    opts = options(adapter_cfg)
    if opts["niter"] is not None:
        with torch.random.fork_rng():
            torch.manual_seed(opts["svd_seed"])
            return attach(model, lora_config(model, adapter_cfg, ctx.task_type, f"pissa_niter_{int(opts['niter'])}"))
    model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, False))   # A and B are set below
    for _, layer in lora_layers(model):
        U, S, V = exact_top(_w(layer), layer.r[ADAPTER])
        root = (S / layer.scaling[ADAPTER]).sqrt()
        set_lora(layer, A=root[:, None] * V.T, B=U * root)
        offset_base(layer)
        refresh_dora(layer)
    return _named(model, "pissa")


@torch.no_grad()
def olora(model, adapter_cfg, batches, ctx):
    """Q, R = qr(W); B = Q[:, :r], A = R[:r]; W_res = W - s*B*A (peft `olora_init`).

    Householder QR is column by column, so Q[:, :r] is the QR of W's first r columns alone, and
    R[:r] = Q[:, :r]^T W: here a thin QR of out x r instead of peft's QR of all of W, with the same A and B
    up to rounding (tests/test_adapters.py compares them with peft's)."""
    model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, False))   # A and B are set below
    for _, layer in lora_layers(model):
        w = _w(layer)
        Q = torch.linalg.qr(w[:, :layer.r[ADAPTER]]).Q
        set_lora(layer, A=Q.T @ w, B=Q)
        offset_base(layer)
        refresh_dora(layer)
    return _named(model, "olora")


def _named(model, init: str):
    """The adapter config names the init peft would have run (saved in adapter_config.json, as peft saves it)."""
    model.peft_config[ADAPTER].init_lora_weights = init
    return model


def _w(layer) -> torch.Tensor:
    return base_weight(layer).to(svd_device(layer))


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
