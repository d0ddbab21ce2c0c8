"""LoRA-SB (Ponkshe, Singhal et al. 2024, arXiv 2411.19557, "Initialization using update approximation is a
silver bullet"): LoRA-XS's s * B R A with only the r x r matrix R trained, initialized so that the initial update
is the best rank-r approximation of full fine-tuning's first update.

Checked against RaghavSinghal10/lora-sb @37b33d4: `utils/gradient_utils.py::estimate_and_process_grads_torch`
(the update estimate), `utils/initialization_utils.py::find_and_initialize_grad` with config/reconstruct_config.yaml
(svd, r_squared: B, R, A from the SVD of the estimate; A and B frozen), `utils/latent_utils.py` (forward
B R A x * s), `train_arithmetic.py` (eff_lr, alpha = r):
    G = the summed gradient over the init batches (here the mean: gradients.layer_gradients, the shared pass
        LoRA-GA and LoRA-One use; the sign below is the same),
    dW = -eff_lr * sign(G)                   (an Adam-like first step; eff_lr the rate of the first warmup step)
    U S V^T = the top-r SVD of dW:  B = U, R = S / s, A = V^T
so s * B R A = [dW]_r, the best rank-r approximation of dW (Eckart-Young), and W is not offset: the initial
model is W + [dW]_r (its output changes at init, as the official code's; `init_losses=true` reports it).
Deviations:
- eff_lr: the official code takes lr / (warmup_ratio * total steps), which the init cannot know (steps depend on
  the data and the launch); options.step_lr is set to trainer.lr in configs/adapter/lora_sb.yaml.
- the official runs torch.svd_lowrank(q=r, niter=10, seed 42) and rounds U, S, V to bf16; we take the exact
  top-r triplets in fp32/fp64 (decompose.exact_top), which is what the paper's Eckart-Young argument asks for
  (svd_lowrank with q = r on a sign matrix, whose spectrum is flat, stops short of it).
- R = S / s: the official code fixes alpha = r (s = 1); dividing by s keeps s*B*R*A = [dW]_r for any alpha.
Not supported: DoRA (the magnitude would have to follow a three-factor update), ZeRO (the frozen A inside the
adapter module is untested under partitioning); both refused at config time. A 4-bit base works: the gradient
pass runs through it and W is not changed.
"""
from __future__ import annotations

import time

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import ADAPTER, lora_layers
from lorabench.adapters.decompose import exact_top, svd_device
from lorabench.adapters.gradients import loss_before, mean_loss
from lorabench.adapters.lora_ga import attach_and_estimate
from lorabench.adapters.middle import install
from lorabench.errors import ConfigError


def update_estimate(g: torch.Tensor, step_lr: float) -> torch.Tensor:
    """Full fine-tuning's first update as the official code estimates it: -lr * sign(G)."""
    return -step_lr * torch.sign(g)


def lora_sb_factors(g: torch.Tensor, r: int, s: float, step_lr: float):
    """B (out x r), R (r x r), A (r x in) with s * B R A = [-step_lr * sign(G)]_r."""
    U, S, V = exact_top(update_estimate(g, step_lr), r)
    return U, torch.diag(S / s), V.T


def lora_sb(model, adapter_cfg, batches, ctx):
    opts, stats = options(adapter_cfg), {}
    model, grads = attach_and_estimate(model, adapter_cfg, batches, ctx, stats)
    if ctx.losses:
        ctx.extra["loss_before"] = loss_before(model, batches, stats, ctx.accelerator)
    t = time.perf_counter()
    for name, layer in lora_layers(model):
        B, R, A = lora_sb_factors(grads.pop(name).to(svd_device(layer)), layer.r[ADAPTER], layer.scaling[ADAPTER],
                                  float(opts["step_lr"]))
        install(layer, A=A, M=R, B=B, train_A=False, train_B=False)   # only R trains
    ctx.extra["svd_seconds"] = round(time.perf_counter() - t, 3)
    if ctx.losses:
        ctx.extra["loss_after"] = mean_loss(model, batches, ctx.accelerator)
    model.peft_config[ADAPTER].init_lora_weights = False   # a reload takes the saved weights as they are
    return model


def check_three_factor(adapter_cfg, opts, max_rank, where):
    if adapter_cfg.use_dora:
        raise ConfigError(f"adapter.use_dora=true with init '{adapter_cfg.init}': its update s*B*M*A has a middle "
                          "matrix DoRA's magnitude does not follow. Set adapter.use_dora=false.")


def check(adapter_cfg, opts, max_rank, where):
    check_three_factor(adapter_cfg, opts, max_rank, where)
    if not (isinstance(opts["step_lr"], (int, float)) and opts["step_lr"] > 0):
        raise ConfigError(f"adapter.options.step_lr={opts['step_lr']!r} must be a positive number: the learning rate "
                          "of the first step LoRA-SB's update estimate stands for (configs/adapter/lora_sb.yaml: "
                          "${trainer.lr}).")


register(InitMethod("lora_sb", lora_sb, defaults={"step_lr": 2e-4}, data_driven=True, supports_4bit=True,
                    zero=False, plain_pairs=False, check=check))
