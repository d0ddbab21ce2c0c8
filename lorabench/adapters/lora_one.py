"""LoRA-One (Zhang et al. 2025, arXiv 2502.01235): B, A from the top-r SVD of -G, W unchanged.

Checked against YuanheZ/LoRA-One @01bba05 `run_exp.py` (`reinit_lora_modules`, direction "LoRA-One",
scale "stable"; `estimate_gradient`; conf/init/gradient.yaml): G is the mean gradient over the init batches
(gradients.layer_gradients), U, S, V = svd_lowrank(-G, q=512, niter=16),
    B = U[:, :r] diag(sqrt S[:r]) / sqrt(S[0]) / sqrt(gamma),   A = diag(sqrt S[:r]) V[:, :r]^T / sqrt(S[0]) / sqrt(gamma)
so s*B*A = -(s / (gamma * S[0])) [G]_r: the initial model W + s*B*A is one step of gradient descent along the
best rank-r approximation of the gradient. No offset: the output changes at init (the report carries the
init batches' loss before and after). With DoRA the magnitude is rebuilt from W + s*B*A, as the official code.
Deviations: a layer of min(shape) <= 1024 gets its exact top-r triplets (what svd_lowrank(q=512, niter=16)
converges to there, up to rounding; `top_svd`), and svd_lowrank is seeded (options.svd_seed) so every process and re-run
gets the same vectors.
"""
from __future__ import annotations

import time

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import ADAPTER, lora_layers, set_lora
from lorabench.adapters.lora_ga import attach_and_estimate, seeded_svd_lowrank, svd_device
from lorabench.errors import ConfigError

Q, NITER = 512, 16     # the official svd_lowrank settings


def top_svd(m: torch.Tensor, r: int, seed: int):
    """The top-r singular triplets (U, S, V) of m: the official svd_lowrank(q=512, niter=16), or the exact
    ones where the sketch covers at least half of the matrix (min(shape) <= 1024: every layer below 7B scale,
    e.g. SmolLM2's 576 x 576 and 1536 x 576). There 16 power iterations with that much oversampling leave the
    top-r triplets exact up to float rounding (Halko et al. 2011, sec. 10: the error shrinks as
    (sigma_{q-r}/sigma_r)^33), so the exact ones give the same B and A, faster (`exact_top`)."""
    if 2 * Q >= min(m.shape):
        return exact_top(m, r)
    U, S, V = seeded_svd_lowrank(m, q=Q, niter=NITER, seed=seed)
    return U[:, :r], S[:r], V[:, :r]


def exact_top(m: torch.Tensor, r: int):
    """Top-r singular triplets from the r largest eigenpairs of the smaller Gram matrix, in float64: on a CPU,
    LAPACK's syevr computes only those r eigenvectors (scipy's subset_by_index), several times less work
    than a full SVD (1536 x 576: 0.07 s vs 0.36 s, timed side by side). The other side's vectors are m V / S (or m^T U / S).
    Squaring the matrix squares its condition number, which float64 absorbs for the top of a spectrum."""
    a = m.double()
    tall = a.shape[0] >= a.shape[1]
    gram = a.T @ a if tall else a @ a.T
    k = gram.shape[0]
    if gram.is_cuda:
        w, v = torch.linalg.eigh(gram)
        w, v = w[k - r:], v[:, k - r:]
    else:
        from scipy.linalg import eigh

        w, v = (torch.from_numpy(x) for x in eigh(gram.numpy(), subset_by_index=[k - r, k - 1], driver="evr"))
    w, v = w.flip(0), v.flip(1)   # descending
    s = w.clamp(min=0).sqrt()
    other = (a @ v if tall else a.T @ v) / s.clamp(min=torch.finfo(torch.float64).tiny)
    U, V = (other, v) if tall else (v, other)
    return U.to(m.dtype), s.to(m.dtype), V.to(m.dtype)


def lora_one_factors(g: torch.Tensor, r: int, gamma: float, seed: int):
    """A (r x in), B (out x r) with B @ A = [-G]_r / (gamma * sigma_1(G))."""
    U, S, V = top_svd(-g, r, seed)
    root = (S / S[0]).sqrt() / gamma ** 0.5
    return root[:, None] * V.T, U * root


@torch.no_grad()
def mean_loss(model, batches, accelerator=None) -> float:
    """The model's mean per-batch loss over the batches of every process (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = [b for b in batches if not ("labels" in b and bool((b["labels"] == -100).all()))]   # as G skips them
    total = torch.tensor([sum(model(**{k: v.to(device) for k, v in b.items()}).loss.item() for b in batches),
                          float(len(batches))])
    model.train(was_training)
    if accelerator is not None and accelerator.num_processes > 1:
        total = accelerator.reduce(total.to(accelerator.device), reduction="sum").cpu()
    return (total[0] / total[1]).item()


def lora_one(model, adapter_cfg, batches, ctx):
    opts = options(adapter_cfg)
    model, grads = attach_and_estimate(model, adapter_cfg, batches, ctx)
    ctx.extra["loss_before"] = mean_loss(model, batches, ctx.accelerator)   # B = 0: the base model's loss
    t_svd = time.perf_counter()
    for name, layer in lora_layers(model):
        A, B = lora_one_factors(grads.pop(name).to(svd_device(layer)), adapter_cfg.r, opts["stable_gamma"],
                                opts["svd_seed"])
        set_lora(layer, A, B)
        if layer.use_dora.get(ADAPTER):   # W + s*B*A is the new weight: its row norms are the new magnitude
            layer.lora_magnitude_vector[ADAPTER].update_layer(
                base_layer=layer.get_base_layer(), lora_A=layer.lora_A[ADAPTER].weight,
                lora_B=layer.lora_B[ADAPTER].weight, scaling=layer.scaling[ADAPTER])
    ctx.extra["svd_seconds"] = round(time.perf_counter() - t_svd, 3)
    ctx.extra["loss_after"] = mean_loss(model, batches, ctx.accelerator)
    return model


def check(adapter_cfg, opts, max_rank, where):
    if not opts["stable_gamma"] > 0:
        raise ConfigError(f"adapter.options.stable_gamma={opts['stable_gamma']} must be positive (paper: 128).")
    if not isinstance(opts["svd_seed"], int):
        raise ConfigError(f"adapter.options.svd_seed={opts['svd_seed']!r} must be an integer.")


register(InitMethod("lora_one", lora_one, defaults={"stable_gamma": 128, "svd_seed": 0}, data_driven=True,
                    supports_4bit=True, check=check))
