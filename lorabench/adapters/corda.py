"""CorDA, context-oriented decomposition adaptation (Yang et al., NeurIPS 2024, arXiv 2406.05223), via peft.

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
sums and sample counts are all-reduced inside peft's run_model callback, before peft divides and decomposes,
so every rank decomposes the same C — the one of one process over all samples, up to the order of the float
summation (rank-wise partial sums). The SVD is deterministic, so every rank gets the same adapter.
"""
from __future__ import annotations

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import attach, lora_config
from lorabench.errors import ConfigError

METHODS = ("ipm", "kpm")


def corda(model, adapter_cfg, batches, ctx):
    from peft.tuners.lora.config import CordaConfig
    from peft.tuners.lora.corda import preprocess_corda
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    opts = options(adapter_cfg)
    config = lora_config(model, adapter_cfg, ctx.task_type, "corda",
                         corda_config=CordaConfig(corda_method=opts["method"]))
    config = _maybe_include_all_linear_layers(config, model)   # peft's corda matches names; resolve all-linear first
    samples = [ids for b in (batches or []) for ids in _unpadded(b)]
    device = next(model.parameters()).device
    counted = {}

    def run_model():
        handles = _rows_as_tokens(model, config)
        try:
            for ids in samples:
                model(input_ids=ids[None].to(device), attention_mask=torch.ones_like(ids)[None].to(device))
        finally:
            for h in handles:
                h.remove()
        counted.update(_reduce_covariances(model, config, ctx.accelerator, sum(len(ids) for ids in samples)))

    was_training = model.training
    preprocess_corda(model, config, run_model=run_model)
    model.train(was_training)
    peft_model = attach(model, config)
    ctx.extra.update({"method": opts["method"], **counted})
    return peft_model


def _rows_as_tokens(model, config) -> list:
    """peft's CorDA hook drops the batch axis of each layer's input (one sample per forward); a layer that sees
    one vector per example (a BERT pooler: batch x hidden) would be left with a vector and a scalar
    covariance. While CorDA collects, such an input gets a token axis of length 1: one row per example."""
    from peft.tuners.lora.corda import target_modules

    def pre(module, args):
        return (args[0][:, None, :], *args[1:]) if args and args[0].ndim == 2 else None

    return [m.register_forward_pre_hook(pre) for _, m in target_modules(model, config)]


def _unpadded(batch: dict) -> list[torch.Tensor]:
    mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
    return [ids[m] for ids, m in zip(batch["input_ids"], mask)]


def _reduce_covariances(model, config, acc, tokens: int) -> dict:
    """Sum every target layer's covariance sum and sample count over processes, before peft divides."""
    from peft.tuners.lora.corda import target_modules

    several = acc is not None and acc.num_processes > 1
    layers = list(target_modules(model, config))
    counts = {int(m.sample_count) for _, m in layers}
    if len(counts) != 1:
        raise ValueError(f"CorDA's layers saw different numbers of samples ({sorted(counts)}): every target layer "
                         "must run once per sample")
    samples = torch.tensor([float(counts.pop())])
    tokens = torch.tensor([float(tokens)])
    if several:
        from lorabench.adapters.gradients import _all_reduce_sum

        samples, tokens = _all_reduce_sum(samples, acc), _all_reduce_sum(tokens, acc)
        for _, m in layers:
            cov = m.covariance_matrix
            if not torch.is_tensor(cov):   # a rank without samples still takes part
                d = m.weight.shape[0 if type(m).__name__ == "Conv1D" else 1]
                cov = torch.zeros(d, d, device=m.weight.device, dtype=torch.float32)
            m.covariance_matrix = _all_reduce_sum(cov, acc).to(m.weight.device)
    n = int(samples.item())
    if n == 0:
        raise ValueError("CorDA got no init samples: set adapter.init_batches > 0.")
    for _, m in layers:
        m.sample_count = n
    return {"samples": n, "tokens": int(tokens.item())}


def check(adapter_cfg, opts, max_rank, where):
    if opts["method"] not in METHODS:
        raise ConfigError(f"adapter.options.method={opts['method']!r} is unknown to CorDA; use one of "
                          f"{', '.join(METHODS)} (ipm: top-r, instruction-previewed; "
                          f"kpm: bottom-r, knowledge-preserved).")


register(InitMethod("corda", corda, defaults={"method": "ipm"}, data_driven=True, mutates_base=True,
                    supports_4bit=True, quantize_after_init=True, check=check))
