"""GoRA: Gradient-driven Adaptive Low Rank Adaptation (He et al., NeurIPS 2025, arXiv 2502.12171).

Checked against the official hhnqqq/MyTransformers `common/lora_modules/gora.py` (`gora_reinit`,
`get_allocated_rank`, `compute_importance`, `LinearWithGoRA.grad_compress_init`) at 4037d4d, with the
flags of `scripts/gora/*.sh`; ALGORITHMS.md §4.

1. Attach a uniform rank-r LoRA (B = 0) and estimate every layer's mean gradient G (gradients.py).
2. Importance I_i (default `union_mean`: mean |W ⊙ G|), a_i = I_i / Σ I.
3. Ranks within the budget. f = features_func (identity by default), F_i = f(m_i + n_i), budget
   b = r·Σ F_i, and as the official code (`allocate(b·a_i) // F_i`, then clipped):
       rank_i = clip(floor(allocate(b·a_i) / F_i), min_rank, max_rank),   allocate = round | ceil | floor.
   What is conserved: before clipping, Σ rank_i·F_i ∈ (b − Σ F_i − N, b + N] for N layers (each layer
   loses under one rank to the floor and the allocate rounding moves it by at most 1). With f = identity
   that is the trainable parameter count Σ rank_i (m_i + n_i) of a uniform rank-r LoRA, to within one rank
   per layer. Clipping is applied after, without redistribution (as the official code), so the clipped
   count can leave the budget; ctx.extra reports both ("budget", "allocated").
4. Re-attach the LoRA with per-layer ranks (peft rank_pattern, saved in adapter_config.json so
   PeftModel.from_pretrained rebuilds the shapes). Scaling s_i = α/√r_i with use_rslora (the scripts'
   --gora-rank-stablize --gora-dynamic-scaling); dynamic_scaling=false keeps s = α/√r for every layer
   (alpha_pattern).
5. A ~ kaiming_uniform(a=√5) from a seeded generator (the same on every process), and
       B = ± (lr·√(n_in/r_i) / s_i) · G Aᵀ (A Aᵀ + 1e-8 I)⁺     (scale_by_lr, the scripts' setting)
   so s_i·B·A = ± lr·√(n_in/r_i) · G·P_A with P_A = Aᵀ(AAᵀ)⁻¹A: one gradient step of size lr projected on
   A's row space, rescaled because ‖G P_A‖ ≈ √(r_i/n_in)‖G‖. (The official γ_eff·/α with
   γ_eff = lr/√(r_i/n_in)·scale_rank and s_i = α/scale_rank is the same number.) W is not changed.

Sign: HEAD (since 321fe07) stores +B, the February 2025 code (724935c) and the paper −B (a descent step).
`sign: descent` (−, default) is the paper's; `official_head` is HEAD's. tests/test_init_gora.py checks
that descent lowers the loss on the init batches; with `init_losses=true` the losses before/after init go
into the report.

Deviations: only the scripts' path is built (init_method=compress, A kaiming, gradients by backward hooks);
not built: softmax importance, the adaptive lr / n-step searches, AdaLomo n-step gradients, the L1 solve,
randomized-SVD importances. Gradients and losses are averaged over all processes' batches; ranks and A are
then identical on every process without the official broadcast. The training-side LoRA+ (B lr x16) of the
scripts is not part of the init: trainer.loraplus_lr_ratio, set by configs/experiment/gora/.
"""
from __future__ import annotations

import math

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import ADAPTER, attach, base_weight, lora_config, lora_layers, set_lora
from lorabench.adapters.gradients import layer_gradients, loss_before, mean_loss
from lorabench.errors import ConfigError

IMPORTANCE = {   # official compute_importance types (the deterministic ones); x = W ⊙ G
    "union_mean": lambda w, g: (w * g).abs().mean(),
    "union_frobenius_norm": lambda w, g: torch.linalg.matrix_norm(w * g),
    "union_2ord_norm": lambda w, g: torch.linalg.norm(w * g, dim=1).mean(),
    "union_nuc_norm": lambda w, g: torch.linalg.matrix_norm(w * g, ord="nuc"),
    "grad_nuc_norm": lambda w, g: torch.linalg.matrix_norm(g, ord="nuc"),
    "grad_frobenius_norm": lambda w, g: torch.linalg.matrix_norm(g),
    "grad_mean": lambda w, g: g.abs().mean(),
}
ALLOCATE = {"round": round, "ceil": math.ceil, "floor": math.floor}   # official moderate / radical / conserved
FEATURES = {None: lambda x: x, "sqrt": math.sqrt, "log1p": math.log1p}
SIGNS = {"descent": -1.0, "official_head": 1.0}


def allocate_ranks(importance: dict[str, float], features: dict[str, int], r: int, min_rank: int, max_rank: int,
                   allocate: str = "round", features_func: str | None = None) -> tuple[dict[str, int], float]:
    """Per-layer ranks from normalized importance within the budget r·Σ f(features); returns (ranks, budget)."""
    f = {n: FEATURES[features_func](features[n]) for n in importance}
    budget = r * sum(f.values())
    total = sum(importance.values())
    ranks = {}
    for n, imp in importance.items():
        rank = ALLOCATE[allocate](budget * imp / total) // f[n]    # official: allocate the share, floor-divide
        ranks[n] = int(min(max(rank, min_rank), max_rank))
    return ranks, budget


def projected_step(G: torch.Tensor, A: torch.Tensor, scale: float) -> torch.Tensor:
    """B = scale · G Aᵀ (A Aᵀ + 1e-8 I)⁺, the least-squares B with B·A = scale·G·P_A (official compress init)."""
    AAt = A @ A.T
    return scale * (G @ A.T) @ torch.linalg.pinv(AAt + 1e-8 * torch.eye(len(A), device=A.device))


def kaiming_a(r: int, n_in: int, generator: torch.Generator) -> torch.Tensor:
    A = torch.empty(r, n_in)
    return torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=generator)   # as LoRA's A


def gora(model, adapter_cfg, batches, ctx):
    opts = options(adapter_cfg)
    check(adapter_cfg, opts, None, "the model")
    batches = list(batches or [])
    peft_model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, True))   # B = 0: output unchanged
    stats = {}
    grads = layer_gradients(peft_model, batches, ctx.accelerator, stats)
    layers = dict(lora_layers(peft_model))
    importance = {}
    for n, g in grads.items():
        w = base_weight(layers[n])
        importance[n] = IMPORTANCE[opts["importance"]](w, g.to(w.device)).item()
    if opts["scale_importance"]:
        importance = {n: math.sqrt(i) for n, i in importance.items()}
    features = {n: sum(g.shape) for n, g in grads.items()}     # m_i + n_i
    ranks, budget = allocate_ranks(importance, features, adapter_cfg.r, opts["min_rank"], opts["max_rank"],
                                   opts["allocate"], opts["features_func"])
    if ctx.losses:
        ctx.extra["loss_before"] = loss_before(peft_model, batches, stats, ctx.accelerator)

    # Re-attach with the allocated ranks; the saved adapter_config carries rank_pattern (and alpha_pattern).
    model = peft_model.unload()
    alphas = {}
    if not opts["dynamic_scaling"]:   # official scale_rank = r_ref: the same s = α/r(^½) on every layer
        power = 0.5 if adapter_cfg.use_rslora else 1.0
        alphas = {n: adapter_cfg.alpha * (k / adapter_cfg.r) ** power for n, k in ranks.items()}
    peft_model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, True,
                                           rank_pattern=ranks, alpha_pattern=alphas))

    gen = torch.Generator().manual_seed(opts["seed"])   # CPU generator: the same A on every process and device
    sign, gammas = SIGNS[opts["sign"]], {}
    for name, layer in lora_layers(peft_model):
        G = grads.pop(name)
        r_i, n_in, s_i = ranks[name], G.shape[1], layer.scaling[ADAPTER]
        A = kaiming_a(r_i, n_in, gen)
        # s_i·B·A = lr·√(n_in/r_i)·G·P_A (scale_by_lr), else (stable_gamma/α)·s_i·G·P_A (the official else-branch)
        if opts["scale_by_lr"]:
            step = opts["lr"] * math.sqrt(n_in / r_i) / s_i
        else:
            step = opts["stable_gamma"] / adapter_cfg.alpha
        gammas[name] = step * adapter_cfg.alpha        # the official γ_eff (B *= γ_eff/α)
        dev = layer.lora_A[ADAPTER].weight.device
        B = projected_step(G.to(dev), A.to(dev), sign * step)
        set_lora(layer, A, B)
    if ctx.losses:
        ctx.extra["loss_after"] = mean_loss(peft_model, batches, ctx.accelerator)
    ctx.extra.update({
        "importance": importance, "ranks": ranks, "gamma": gammas, "budget": budget,
        "allocated": sum(ranks[n] * FEATURES[opts["features_func"]](features[n]) for n in ranks),
    })
    return peft_model


def check(adapter_cfg, opts, max_rank, where):
    """Config-time checks; max_rank is the largest rank the smallest target layer allows (None: not known)."""
    def need(cond, msg):
        if not cond:
            raise ConfigError(f"adapter.init=gora: {msg}")

    for key, known in (("importance", IMPORTANCE), ("allocate", ALLOCATE), ("features_func", FEATURES),
                       ("sign", SIGNS)):
        need(opts[key] in known, f"adapter.options.{key}={opts[key]!r} is unknown; use one of "
                                 f"{', '.join(str(k).replace('None', 'null') for k in known)}.")
    lo, hi, r = opts["min_rank"], opts["max_rank"], adapter_cfg.r
    need(isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= r <= hi,
         f"needs 0 < adapter.options.min_rank <= adapter.r <= adapter.options.max_rank (integers); "
         f"got min_rank={lo}, r={r}, max_rank={hi}.")
    need(max_rank is None or hi <= max_rank,
         f"adapter.options.max_rank={hi} is too large for {where}, which allows a rank of at most {max_rank}. "
         f"Lower adapter.options.max_rank or narrow adapter.target_modules.")
    need(opts["lr"] >= 0 and opts["stable_gamma"] >= 0, "adapter.options.lr and stable_gamma must be >= 0.")
    need(not adapter_cfg.use_dora, "DoRA's magnitude is set from W + s·B·A at attach time, before GoRA sets B; "
                                   "use adapter.use_dora=false.")


register(InitMethod("gora", gora, data_driven=True, supports_4bit=True, check=check, defaults={
    "min_rank": 4, "max_rank": 32, "lr": 0.05,         # --gora-min-rank 4 --gora-max-rank 32 --gora-lr 5e-2
    "importance": "union_mean", "scale_importance": False, "allocate": "round", "features_func": None,
    "scale_by_lr": True, "stable_gamma": 0.02,          # stable_gamma: the official default, used without scale_by_lr
    "dynamic_scaling": True,                            # --gora-dynamic-scaling: s_i = α/√r_i (with use_rslora)
    "sign": "descent", "seed": 0,
}))
