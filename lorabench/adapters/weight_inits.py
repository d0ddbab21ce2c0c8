"""Weight-only inits that peft implements faithfully: LoRA (kaiming / gaussian), PiSSA, OLoRA.

rsLoRA and DoRA are flags (adapter.use_rslora, adapter.use_dora) that compose with any init.
Checked against huggingface/peft `src/peft/tuners/lora/layer.py` (`reset_lora_parameters`, `pissa_init`,
`olora_init`) at 5d602fd, and ALGORITHMS.md §1, §5.
"""
import torch

from lorabench.adapters import InitMethod, register
from lorabench.adapters.common import attach, lora_config


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


register(InitMethod("lora", lora, supports_4bit=True))
register(InitMethod("lora_gaussian", lora_gaussian, supports_4bit=True))
register(InitMethod("pissa", pissa, defaults={"niter": None, "svd_seed": 0}, mutates_base=True))
register(InitMethod("olora", olora, mutates_base=True))

register(InitMethod("milora", None, mutates_base=True))   # implemented below by the inits issue
