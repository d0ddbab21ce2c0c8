"""CorDA, context-oriented decomposition adaptation (Yang et al., NeurIPS 2024, arXiv 2406.05223), peft's math.

For every target layer, C = sum_s X_s^T X_s / #samples over the init samples (X_s a sample's layer input,
divided by its largest entry). SVD of W C (C damped until it inverts well) gives U, S, V^T; V <- (V^T C^-1)^T.
method=ipm (instruction-previewed) keeps the top-r components, kpm (knowledge-preserved) the bottom-r;
A = sqrt(S/s) V^T, B = U sqrt(S/s) and W_res = W - s B A (s = the LoRA scaling), so the output is unchanged.

peft's preprocess_corda + corda_init (tuners/lora/corda.py, layer.py; 0.21.2) follow the official
iboing/CorDA cordalib/act_aware_utils.py `calib_cov_distribution` and decomposition.py `decompose_to_adapter`
@baffb03, as checked: per-sample normalisation by the sample's max, damp 0.01 doubled until
||C C^-1 - I|| < 0.05, full SVD, first_eigen (ipm) / last-r (kpm). Differences:
- the official code divides the summed covariance by a fixed 256 (its calibration size); peft divides by the
  number of samples seen, the same for 256 samples and the mean otherwise.
- peft folds the singular values into A and B as sqrt(S) each and divides S by the scaling; the official
  adapter keeps U, S, V separately (sigma_fuse) with W_res = W - U S V^T: the same W_res and the same product.
- official calibration data: the paper's IPM samples the task's own data (e.g. MetaMathQA); KPM samples a
  world-knowledge QA set (TriviaQA, NQ-open). Here the init batches are always the task's training batches
  (DESIGN: no second data path), so method=kpm is the bottom-r decomposition of the task-data covariance; for
  the paper's KPM, calibrate on a QA task.

The official calibration runs one unpadded sample per forward (batch size 1), and peft's hook assumes that
(squeeze(0)): we split every init batch into its samples, padding removed, so the result does not depend on
adapter.init_batch_size. Several processes: each rank accumulates sum_s X_s^T X_s over its own samples; the
sums and sample counts are all-reduced before C is divided and decomposed, so every rank decomposes the same
C — the one of one process over all samples, up to the order of the float summation (rank-wise partial
sums). The decomposition is deterministic, so every rank gets the same adapter.

Computed here with peft's operations (so kpm equals peft's preprocess_corda + corda_init up to peft's float32
summation of C, once peft's triplets are given our signs, and ipm equal up to rounding; tests/test_init_corda.py),
at a fraction of peft's cost: layers that see the same input (q/k/v, gate/up) share one covariance and one damped inverse instead of one each; peft's NaN/Inf
checks of every sample's input and covariance become one check of each sum (a non-finite value survives
the sum); and ipm takes the exact top-r triplets of W C (decompose.exact_top, float64) where peft takes a
full SVD to keep r of them. peft's corda_init then builds A, B and W_res from the kept parts.
"""
from __future__ import annotations

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import attach, lora_config
from lorabench.adapters.decompose import exact_top, fix_signs
from lorabench.errors import ConfigError

METHODS = ("ipm", "kpm")


def corda(model, adapter_cfg, batches, ctx):
    from peft.tuners.lora.corda import target_modules
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    opts = options(adapter_cfg)
    config = lora_config(model, adapter_cfg, ctx.task_type, "corda", corda_config=_corda_config(opts["method"]))
    config = _maybe_include_all_linear_layers(config, model)   # peft's corda matches names; resolve all-linear first
    layers = dict(target_modules(model, config))
    samples = [ids for b in (batches or []) for ids in _unpadded(b)]
    was_training = model.training
    model.eval()
    sums, shared = _covariance_sums(model, layers, samples)
    model.train(was_training)
    n, tokens = _reduce(sums, layers, shared, ctx.accelerator, len(samples), sum(len(ids) for ids in samples))
    inverses = {}
    for name, module in layers.items():
        key = shared[name]
        if key not in inverses:   # one damped C and inverse per distinct input, as peft computes for each layer
            inverses[key] = _damped_inverse((_checked(sums.pop(key), key) / n).float())
        module.eigens = _eigens(module, *inverses[key], _module_rank(config, name), opts["method"])
    peft_model = attach(model, config)   # peft's corda_init: A = sqrt(S/s) V^T, B = U sqrt(S/s), W_res = W - s B A
    ctx.extra.update({"method": opts["method"], "samples": n, "tokens": tokens})
    return peft_model


def _corda_config(method: str):
    from peft.tuners.lora.config import CordaConfig   # not exported at peft's top level (0.21)

    return CordaConfig(corda_method=method)


def _module_rank(config, name: str) -> int:
    from peft.utils.other import get_pattern_key

    return config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), name), config.r)


def _unpadded(batch: dict) -> list[torch.Tensor]:
    mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
    return [ids[m] for ids, m in zip(batch["input_ids"], mask)]


@torch.no_grad()
def _covariance_sums(model, layers: dict, samples: list[torch.Tensor]) -> tuple[dict, dict]:
    """sum_s X_s^T X_s per distinct layer input, X_s = the sample's rows / max(rows) (peft corda.py
    calib_cov_distribution's hook, float32), one unpadded sample per forward, summed in float64: peft sums in
    float32, where the order of the sum (which process holds which samples) moves C by ~1e-7 relative and the
    float32 inverse of the damped C amplifies that to 1e-3 in A (SmolLM2, 1 vs 2 processes); in float64 the
    orders agree to ~1e-16 and C rounded to float32 is the same on every layout; and {layer: the layer whose sum
    it shares}. A layer fed the very tensor the previous hooked layer got (q/k/v, gate/up) shares its sum. A
    layer that sees one vector per example (a BERT pooler: 1 x hidden) contributes that row (peft's hook would
    reduce it to a vector and a scalar covariance)."""
    sums, shared, last = {}, {}, {"x": None, "name": None}

    def hook(name):
        def fn(module, args, out):
            x = args[0]
            if x is last["x"]:
                shared.setdefault(name, last["name"])
                return
            last["x"], last["name"] = x, shared.setdefault(name, name)
            x = x.detach()
            x = (x.squeeze(0) if x.ndim == 3 else x).float()
            x = x / torch.max(x).abs()
            cov = x.t().matmul(x).double()   # each sample's in float32 as peft; their sum in float64 (below)
            sums[name] = cov if name not in sums else sums[name].add_(cov)
        return fn

    device = next(model.parameters()).device
    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        for ids in samples:
            last["x"] = None
            model(input_ids=ids[None].to(device), attention_mask=torch.ones_like(ids)[None].to(device))
    finally:
        for h in handles:
            h.remove()
        last["x"] = None
    return sums, shared


def _reduce(sums: dict, layers: dict, shared: dict, acc, samples: int, tokens: int) -> tuple[int, int]:
    """Sum the covariance sums, sample and token counts over processes (a rank without samples still takes part)."""
    if acc is not None and acc.num_processes > 1:
        from lorabench.adapters.gradients import _all_reduce_sum

        from accelerate.utils import gather_object

        counts = _all_reduce_sum(torch.tensor([float(samples), float(tokens)], dtype=torch.float64), acc)
        samples, tokens = (int(v) for v in counts.tolist())
        # which layers share a sum is seen in the forward: a rank that ran no sample takes a rank's that did,
        # so every rank reduces the same keys, in the same order
        shared.update(next((m for m in gather_object([dict(shared)]) if m), {}))
        for name, module in layers.items():
            if shared.setdefault(name, name) == name:
                d = module.weight.shape[0 if type(module).__name__ == "Conv1D" else 1]
                s = sums.get(name, torch.zeros(d, d, dtype=torch.float64, device=module.weight.device))
                sums[name] = _all_reduce_sum(s, acc).to(module.weight.device)
    if samples == 0:
        raise ValueError("CorDA got no init samples: set adapter.init_batches > 0.")
    return samples, tokens


def _checked(cov: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(cov).all():
        raise ValueError(f"CorDA: non-finite values in the inputs of {name} (its covariance is not finite); "
                         "check the init data and the model's dtype.")
    return cov


def _damped_inverse(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """C + damp * mean(diag C) * I and its inverse, damp = 0.01 doubled until ||C_f C_f^-1 - I|| < 0.05
    (peft corda.py collect_eigens_for_layer, the same float32 operations)."""
    damp = 0.01
    eye = torch.eye(cov.size(0), device=cov.device)
    while True:
        fixed = cov + torch.diag(torch.ones(cov.size(0), device=cov.device) * torch.mean(torch.diag(cov)) * damp)
        inv = torch.linalg.inv(fixed)
        if torch.dist(fixed @ inv, eye).item() < 0.05:
            return fixed, inv
        damp *= 2


def _eigens(module, fixed: torch.Tensor, inv: torch.Tensor, r: int, method: str):
    """peft's CordaEigens, already cropped to the r kept parts: U, S of W C_f and V = (V^T C_f^-1)^T."""
    from peft.tuners.lora.corda import CordaEigens

    w = module.weight.data.float()
    w = (w.T if type(module).__name__ == "Conv1D" else w) @ fixed
    if method == "ipm":
        U, S, V = exact_top(w, r)
        V = (V.T @ inv).transpose(0, 1)
    else:   # kpm: the bottom r, where squaring W C would cost precision: peft's full SVD, cropped after V^T C^-1
        U, S, Vh = torch.linalg.svd(w, full_matrices=False)   # as peft does (the same rounding)
        U, S, V = U[:, -r:], S[-r:], (Vh @ inv).transpose(0, 1)[:, -r:]
        U, V = fix_signs(U, V)   # decompose's convention (peft keeps LAPACK's signs); V's are u's: exact negations
    return CordaEigens(S_WC=S.clone(), U_WC=U.contiguous(), V_WC=V.contiguous())


def check(adapter_cfg, opts, max_rank, where):
    if opts["method"] not in METHODS:
        raise ConfigError(f"adapter.options.method={opts['method']!r} is unknown to CorDA; use one of "
                          f"{', '.join(METHODS)} (ipm: top-r, instruction-previewed; "
                          f"kpm: bottom-r, knowledge-preserved).")


register(InitMethod("corda", corda, defaults={"method": "ipm"}, data_driven=True, mutates_base=True,
                    supports_4bit=True, quantize_after_init=True, check=check))
