"""LoRA-One (Zhang et al. 2025, arXiv 2502.01235): B, A from the top-r SVD of -G, W unchanged.

Checked against YuanheZ/LoRA-One @01bba05 `run_exp.py` (`reinit_lora_modules`, direction "LoRA-One",
scale "stable"; `estimate_gradient`; conf/init/gradient.yaml): G is the mean gradient over the init batches
(gradients.layer_gradients), U, S, V = svd_lowrank(-G, q=512, niter=16),
    B = U[:, :r] diag(sqrt S[:r]) / sqrt(S[0]) / sqrt(gamma),   A = diag(sqrt S[:r]) V[:, :r]^T / sqrt(S[0]) / sqrt(gamma)
so s*B*A = -(s / (gamma * S[0])) [G]_r: the initial model W + s*B*A is one step of gradient descent along the
best rank-r approximation of the gradient. No offset: the output changes at init (with `init_losses=true`
the report carries the init batches' loss before and after). With DoRA the magnitude is rebuilt from
W + s*B*A, as the official code.
Deviations: a layer of min(shape) <= 1024 gets its exact top-r triplets (what svd_lowrank(q=512, niter=16)
converges to there, up to rounding; `top_svds`), and svd_lowrank is seeded (options.svd_seed) so every
process and re-run gets the same vectors.
"""
from __future__ import annotations

import time

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import lora_layers, refresh_dora, set_lora
from lorabench.adapters.decompose import converged_top, seeded_svd_lowrank, stacks, svd_device
from lorabench.adapters.gradients import loss_before, mean_loss
from lorabench.adapters.lora_ga import attach_and_estimate
from lorabench.errors import ConfigError

Q, NITER = 512, 16     # the official svd_lowrank settings


def top_svds(ms: list[torch.Tensor], r: int, seed: int) -> list[tuple]:
    """The top-r singular triplets (U, S, V) of each matrix of a list of equal shape: the official
    svd_lowrank(q=512, niter=16), or the exact ones where the sketch covers at least half of the matrix
    (min(shape) <= 1024: every layer below 7B scale, e.g. SmolLM2's 576 x 576 and 1536 x 576). There 16 power
    iterations with that much oversampling leave the top-r triplets exact up to float rounding (Halko et al.
    2011, sec. 10: the error shrinks as (sigma_{q-r}/sigma_r)^33), so the exact ones give the same B and A,
    faster (`decompose.converged_top`: converged to float64 precision, all layers of a shape at once)."""
    if 2 * Q >= min(ms[0].shape):
        return converged_top(ms, r, seed)
    out = []
    for m in ms:
        U, S, V = seeded_svd_lowrank(m, q=Q, niter=NITER, seed=seed)
        out.append((U[:, :r], S[:r], V[:, :r]))
    return out


def lora_one_factors(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor, gamma: float):
    """A (r x in), B (out x r) with B @ A = U S V^T / (gamma * S[0]): from -G's top triplets,
    [-G]_r / (gamma * sigma_1(G))."""
    root = (S / S[0]).sqrt() / gamma ** 0.5
    return root[:, None] * V.T, U * root


def lora_one(model, adapter_cfg, batches, ctx):
    opts, stats = options(adapter_cfg), {}
    model, grads = attach_and_estimate(model, adapter_cfg, batches, ctx, stats)
    if ctx.losses:   # B = 0: the base model's loss
        ctx.extra["loss_before"] = loss_before(model, batches, stats, ctx.accelerator)
    t_svd = time.perf_counter()
    layers = dict(lora_layers(model))
    keys = {n: (*grads[n].shape, svd_device(layer)) for n, layer in layers.items()}
    for names in stacks(keys):   # every layer of a shape in one batched decomposition
        tops = top_svds([grads.pop(n).to(keys[n][2]) for n in names], adapter_cfg.r, opts["svd_seed"])
        for n, (U, S, V) in zip(names, tops):   # -G = (-U) S V^T
            A, B = lora_one_factors(-U, S, V, opts["stable_gamma"])
            set_lora(layers[n], A, B)
            refresh_dora(layers[n])   # W + s*B*A is the new weight: its row norms are the new magnitude
    ctx.extra["svd_seconds"] = round(time.perf_counter() - t_svd, 3)
    if ctx.losses:
        ctx.extra["loss_after"] = mean_loss(model, batches, ctx.accelerator)
    return model


def check(adapter_cfg, opts, max_rank, where):
    if not opts["stable_gamma"] > 0:
        raise ConfigError(f"adapter.options.stable_gamma={opts['stable_gamma']} must be positive (paper: 128).")
    if not isinstance(opts["svd_seed"], int):
        raise ConfigError(f"adapter.options.svd_seed={opts['svd_seed']!r} must be an integer.")


register(InitMethod("lora_one", lora_one, defaults={"stable_gamma": 128, "svd_seed": 0}, data_driven=True,
                    supports_4bit=True, check=check))
