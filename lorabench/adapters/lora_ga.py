"""LoRA-GA (Wang et al., NeurIPS 2024, arXiv 2407.05000): the paper's `lora_ga` and peft's `lora_ga_peft`.

Both take G = the mean full-weight gradient over the init batches (gradients.layer_gradients: fp32,
all-reduced across processes, works through a 4-bit base) and its top-2r singular vectors, then offset W so
the model's output is unchanged at init (W_res = W - s*B*A).

`lora_ga` is the official math, checked against Outsider565/LoRA-GA @89af7de `reproduce/run_exp.py`
(`reinit_lora_modules`, mode "gradient") and the fork's `peft/src/peft/tuners/lora/layer.py::lora_ga_init`:
U, S, V = svd_lowrank(G, q=min(4r, min(G.shape)), niter=4); singular values are not used;
  direction ArB2r: A = V[:, :r]^T, B = U[:, r:2r];  A2rBr: A = V[:, r:2r]^T, B = U[:, :r];
            ArBr:  A = V[:, 1:2r:2]^T, B = U[:, 0:2r:2]
  scale stable: A, B *= m^(1/4)/sqrt(gamma) (m = out_features); gd: A, B /= s; unit: none;
        weightS: A, B *= mean(sqrt(S_W[:r] / s)), S_W from svd_lowrank(W, q=4r, niter=4).
Deviations: svd_lowrank is seeded (options.svd_seed, per layer) so every process and every re-run gets the
same vectors (the official code does not seed), and each triplet's sign follows decompose.fix_signs (the
official signs are LAPACK's; A and B come from different triplets, so a sign changes training); the fork's
unseeded "random" direction and its optional norm_clip are left out; the fork's init dtype option is the adapter's own dtype here (fp32 by default).
On a 4-bit base W is dequantized for the offset and W_res re-quantized (common.offset_base), as the fork does.

`lora_ga_peft` is peft 0.21's variant (tuners/lora/layer.py `lora_ga_init`, tuners/lora/loraga.py), which
differs from the paper: B = U[:, r:2r] diag(S[r:2r]) and the stable scale on B only. We run peft's own
`lora_ga_init` on each layer, fed with our gradient through the attribute peft reads (`_peft_loraga_grad`)
instead of peft's `preprocess_loraga` (which accumulates W.grad on one process and refuses 4-bit bases).
Equal to peft's pipeline on a full-precision model (tests) up to signs: each triplet's sign follows
decompose.fix_signs (`peft_signs`; peft keeps LAPACK's, which the last bits of G decide, so 1 and 2 processes
could get different adapters); A and B stay in the adapter's dtype where peft rounds them to the base
weight's dtype first.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import attach, base_weight, lora_config, lora_layers, offset_base, set_lora
from lorabench.adapters.decompose import fix_signs, seeded_svd_lowrank, svd_device
from lorabench.adapters.gradients import layer_gradients
from lorabench.errors import ConfigError

DIRECTIONS = ("ArB2r", "A2rBr", "ArBr")
SCALES = ("stable", "gd", "unit", "weightS")
PEFT_DIRECTIONS = ("ArB2r", "A2rBr", "ArBr", "random")
PEFT_SCALES = ("stable", "weight_svd", "gd_scale", "unit")


def lora_ga_factors(g: torch.Tensor, w: torch.Tensor, r: int, s: float, opts: dict):
    """A (r x in), B (out x r) from the gradient G (out x in) of a weight W, as the official reinit_lora_modules."""
    U, _, V = seeded_svd_lowrank(g, q=min(4 * r, min(g.shape)), niter=4, seed=opts["svd_seed"])
    A, B = {"ArB2r": (V[:, :r].T, U[:, r:2 * r]),
            "A2rBr": (V[:, r:2 * r].T, U[:, :r]),
            "ArBr": (V[:, 1:2 * r:2].T, U[:, 0:2 * r:2])}[opts["direction"]]
    scale = opts["scale"]
    if scale == "stable":        # keeps the output scale independent of the width (the paper's "+SO")
        f = g.shape[0] ** 0.25 / opts["stable_gamma"] ** 0.5
    elif scale == "gd":
        f = 1 / s
    elif scale == "weightS":
        S_w = seeded_svd_lowrank(w, q=min(4 * r, min(w.shape)), niter=4, seed=opts["svd_seed"])[1]
        f = (S_w[:r] / s).sqrt().mean().item()
    else:                        # unit: orthonormal rows and columns as they are
        f = 1.0
    return A * f, B * f


def attach_and_estimate(model, adapter_cfg, batches, ctx, stats: dict | None = None):
    """Attach a B = 0 LoRA and estimate G through it (`stats` as layer_gradients); records the cost in the
    init report."""
    model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, True))
    t = time.perf_counter()
    grads = layer_gradients(model, batches, ctx.accelerator, stats)
    ctx.extra.update(grad_batches_per_process=len(batches),
                     processes=ctx.accelerator.num_processes if ctx.accelerator is not None else 1,
                     grad_seconds=round(time.perf_counter() - t, 3))
    return model, grads


def _init_layers(model, adapter_cfg, batches, ctx, factors):
    """Estimate G, then per layer A, B = factors(G, layer, opts) on the layer's device, and offset W."""
    opts = options(adapter_cfg)
    model, grads = attach_and_estimate(model, adapter_cfg, batches, ctx)
    t = time.perf_counter()
    for name, layer in lora_layers(model):
        A, B = factors(grads.pop(name).to(svd_device(layer)), layer, opts)
        set_lora(layer, A, B)
        offset_base(layer)
    ctx.extra["svd_seconds"] = round(time.perf_counter() - t, 3)
    return model


def lora_ga(model, adapter_cfg, batches, ctx):
    def factors(g, layer, opts):
        w = base_weight(layer).to(g.device) if opts["scale"] == "weightS" else None
        return lora_ga_factors(g, w, adapter_cfg.r, layer.scaling["default"], opts)
    return _init_layers(model, adapter_cfg, batches, ctx, factors)


def peft_lora_ga_factors(g: torch.Tensor, w: torch.Tensor, adapter_cfg, opts: dict):
    """A, B from peft's own `lora_ga_init`, run on a throwaway fp32 copy of the layer carrying our gradient."""
    from peft import LoraConfig, LoraGAConfig
    from peft.tuners.lora import Linear

    base = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")   # no init of a weight replaced next
    base.weight = nn.Parameter(w.clone(), requires_grad=False)   # peft offsets this copy; the model's W by offset_base
    base._peft_loraga_grad = g
    config = LoraConfig(r=adapter_cfg.r, lora_alpha=adapter_cfg.alpha, use_rslora=adapter_cfg.use_rslora,
                        init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig(
                            direction=opts["direction"], scale=opts["scale"], stable_gamma=opts["stable_gamma"]))
    with torch.random.fork_rng(devices=[w.device] if w.is_cuda else []):
        torch.manual_seed(opts["svd_seed"])
        layer = Linear(base, "default", config=config, r=adapter_cfg.r, lora_alpha=adapter_cfg.alpha)
    return peft_signs(g, layer.lora_A["default"].weight.data, layer.lora_B["default"].weight.data)


def peft_signs(g: torch.Tensor, A: torch.Tensor, B: torch.Tensor):
    """peft's A and B with decompose.fix_signs's convention on G's triplets, set after the fact since peft's
    lora_ga_init keeps LAPACK's: B's column j is u_j times a positive factor (its own largest entry decides),
    A's row i is v_i^T times a positive factor, and u_i is G v_i / s_i (the largest entry of G A_i^T decides).
    The "random" direction's rows are no singular vectors; the same rule makes them deterministic too."""
    _, b = fix_signs(B, torch.eye(B.shape[1], dtype=B.dtype, device=B.device))
    _, a = fix_signs(g.to(A.dtype) @ A.T, torch.eye(A.shape[0], dtype=A.dtype, device=A.device))
    return A * a.diagonal()[:, None], B * b.diagonal()


def lora_ga_peft(model, adapter_cfg, batches, ctx):
    def factors(g, layer, opts):
        return peft_lora_ga_factors(g, base_weight(layer).to(g.device), adapter_cfg, opts)
    return _init_layers(model, adapter_cfg, batches, ctx, factors)


def _check(directions, scales):
    def check(adapter_cfg, opts, max_rank, where):
        for key, allowed in (("direction", directions), ("scale", scales)):
            if opts[key] not in allowed:
                raise ConfigError(f"adapter.options.{key}={opts[key]!r} is unknown to init '{adapter_cfg.init}'; "
                                  f"use one of {', '.join(allowed)}.")
        if not opts["stable_gamma"] > 0:
            raise ConfigError(f"adapter.options.stable_gamma={opts['stable_gamma']} must be positive (paper: 16).")
        if not isinstance(opts["svd_seed"], int):
            raise ConfigError(f"adapter.options.svd_seed={opts['svd_seed']!r} must be an integer.")
    return check


DEFAULTS = {"direction": "ArB2r", "scale": "stable", "stable_gamma": 16, "svd_seed": 0}
register(InitMethod("lora_ga", lora_ga, defaults=dict(DEFAULTS), data_driven=True, mutates_base=True,
                    supports_4bit=True, rank_factor=2, check=_check(DIRECTIONS, SCALES)))
register(InitMethod("lora_ga_peft", lora_ga_peft, defaults=dict(DEFAULTS), data_driven=True, mutates_base=True,
                    supports_4bit=True, rank_factor=2, check=_check(PEFT_DIRECTIONS, PEFT_SCALES)))
