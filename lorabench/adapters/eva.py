"""EVA, Explained Variance Adaptation (Paischer et al., NeurIPS 2025, arXiv 2410.07170v5), via peft.

A <- the top principal directions of each target layer's inputs: an incremental, mean-centred PCA over the
init batches, cycled until every component a layer needs has converged (cosine similarity >= tau between
consecutive steps). B = 0, so the model's output is unchanged. A layer may take up to round(rho*r)
components; the budget N*r (N target layers) goes, every step, to the components with the largest explained
variance ratio over all layers, so ranks range over 0..rho*r and sum to N*r. Rank-0 layers lose their
adapter. Layers that see the same input (q/k/v, gate/up) share one PCA. The resulting ranks and alphas are
written into the adapter config (rank_pattern, alpha_pattern, target_modules), so a saved adapter reloads with
PeftModel.from_pretrained without re-running the init.

peft (tuners/lora/eva.py, utils/incremental_pca.py; 0.21.2) follows the official ml-jku/EVA src/svd.py
`compute_svd` @a5ac24b: the equal-input dedup by hashing the first batch, IncrementalPCA(lowrank, q = 2*rho*r,
niter 4), convergence per component up to the layer's current rank, redistribution by
`explained_variance_ratio_` (the official default metric "ratio"). Deviations, all peft's or ours:
- alpha: the official code keeps alpha fixed when a rank changes (scaling alpha/r_new); peft
  (adjust_scaling_factors=True, our default) scales alpha by r_new/r so every layer keeps alpha/r, as the paper
  states for rho > 1. options.adjust_scaling_factors=false gives the official behaviour.
- peft seeds torch.svd_lowrank (lowrank_seed=42, inside fork_rng), so re-runs are identical and the global
  RNG is untouched; the official code does not seed.
- whiten is not exposed: both codes divide the shared components in place, so layers sharing an input are
  whitened twice.
- like the official code peft cycles the batches until convergence, without an upper bound; we stop after
  MAX_PASSES passes with an error instead of looping forever (e.g. when no batch has rho*r tokens).

use_label_mask: our batches carry labels = -100 on the prompt and padding, so True restricts the PCA to
response tokens. The official runs use False (svd_precompute.py default, bash/run_svd_precompute.sh; paper
F.5: only Code-Feedback masks the user turns): the attention mask alone, prompt tokens included. Our default
is the paper's False; peft's own default is True.

Several processes: peft all-gathers the selected token rows of each layer from every rank at every step
(gather_distributed_inputs), so every rank fits the same PCA on the same rows and takes the same decisions.
Process k holds batches k, k+P, k+2P, ... (run.py), so step t on P processes fits the rows of batches
tP..tP+P-1 in that order: the result equals one process fed those P batches merged into one (the same
token rows up to float rounding), not one process stepping through them one by one. Incremental PCA
truncates to rho*r components and tests convergence at every step, so the step size matters (slightly).
Every rank is cut to the same number of batches (the fewest any rank has: at most P-1 trailing batches
dropped) so the steps pair up, and rank 0's result is broadcast so all ranks hold the identical adapter.
"""
from __future__ import annotations

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import attach, lora_config
from lorabench.errors import ConfigError

MAX_PASSES = 50   # passes over the init batches before we give up on convergence


def eva(model, adapter_cfg, batches, ctx):
    from peft import EvaConfig
    from peft.tuners.lora.eva import get_eva_state_dict, initialize_lora_eva_weights

    opts = options(adapter_cfg)
    acc = ctx.accelerator
    several = acc is not None and acc.num_processes > 1
    batches = _equal_share(list(batches or []), acc)
    eva_config = EvaConfig(rho=float(opts["rho"]), tau=float(opts["tau"]), use_label_mask=bool(opts["use_label_mask"]),
                           adjust_scaling_factors=bool(opts["adjust_scaling_factors"]))
    peft_model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, "eva", eva_config=eva_config))

    probe = _Probe(limit=MAX_PASSES * len(batches))
    try:
        state = get_eva_state_dict(peft_model, batches, forward_fn=probe, gather_distributed_inputs=several,
                                   show_progress_bar=False)
    except BaseException:
        _remove_hooks(peft_model)   # peft leaves its hooks on when a forward raises
        raise
    state = {k: v.detach().cpu() for k, v in state.items()}
    report = probe.report(state, len(batches))
    if several:   # identical by construction; broadcasting makes it so bit for bit
        from accelerate.utils import broadcast_object_list

        state, report = broadcast_object_list([state, report], from_process=0)
    initialize_lora_eva_weights(peft_model, eva_state_dict=state)
    ctx.extra.update(report)
    return peft_model


def _equal_share(batches: list, acc) -> list:
    """The same number of batches on every process (the fewest any has), so peft's per-step gathers pair up."""
    if acc is None or acc.num_processes == 1:
        n = len(batches)
    else:
        from accelerate.utils import gather_object

        n = min(gather_object([len(batches)]))
    if n == 0:
        raise ValueError("EVA got no init batches on some process: set adapter.init_batches >= the number of processes.")
    return batches[:n]


class _Probe:
    """peft's forward_fn: counts EVA's forward passes, stops a run that does not converge, and keeps peft's
    hooks (hash and PCA) from the first two passes so the report can name shared inputs and explained variance."""

    def __init__(self, limit: int):
        self.calls, self.limit = 0, limit
        self.hashes, self.pcas = {}, {}

    def __call__(self, model, inputs):
        from peft.tuners.lora.eva import HashHook, SVDHook

        if self.calls > self.limit:
            raise RuntimeError(f"EVA's PCA did not converge in {MAX_PASSES} passes over the init batches: lower "
                               f"adapter.options.tau, or raise adapter.init_batches / adapter.init_batch_size "
                               f"(each batch needs at least rho*r selected tokens).")
        live = [h for m in model.modules() for h in m._forward_hooks.values()] if self.calls < 2 else []
        out = model(**inputs)
        self.calls += 1
        for h in live:
            if isinstance(h, HashHook):
                self.hashes[h.name] = h.hashed_inputs[0]
            elif isinstance(h, SVDHook):
                self.pcas[h.name] = h
        return out

    def report(self, state: dict, n_batches: int) -> dict:
        by_hash = {}
        for name, hsh in self.hashes.items():   # the PCA a layer used: its own, or its input-sharing group's
            if name in self.pcas:
                by_hash.setdefault(hsh, self.pcas[name])
        ranks, explained, shared = {}, {}, {}
        for name, a in state.items():
            short = name.removeprefix("base_model.model.")
            pca = self.pcas.get(name) or by_hash[self.hashes[name]]
            ranks[short] = int(a.shape[0])
            explained[short] = float(pca.svd.explained_variance_ratio_[:a.shape[0]].sum())
            if pca.name != name:
                shared[short] = pca.name.removeprefix("base_model.model.")
        steps = self.calls - 1   # the first pass only hashes inputs
        return {"ranks": ranks, "explained_variance_ratio": explained, "rank_budget_used": sum(ranks.values()),
                "shares_input_with": shared, "batches_until_converged": steps,
                "passes_over_init_batches": steps / n_batches, "init_batches_used": n_batches,
                "zero_rank_layers": sorted(k for k, r in ranks.items() if r == 0)}


def _remove_hooks(model) -> None:
    from peft.tuners.lora.eva import _Hook

    for m in model.modules():
        for key in [k for k, h in m._forward_hooks.items() if isinstance(h, _Hook)]:
            del m._forward_hooks[key]


def check(adapter_cfg, opts, max_rank, where):
    """Config time: peft's own bounds on rho and tau, and rho*r components fitting the smallest layer."""
    if not (isinstance(opts["rho"], (int, float)) and opts["rho"] >= 1):
        raise ConfigError(f"adapter.options.rho={opts['rho']!r} must be a number >= 1 (the paper uses 1 or 2).")
    if not (isinstance(opts["tau"], (int, float)) and 0 < opts["tau"] <= 1):
        raise ConfigError(f"adapter.options.tau={opts['tau']!r} must be in (0, 1] (the paper uses 0.99).")
    for key in ("use_label_mask", "adjust_scaling_factors"):
        if not isinstance(opts[key], bool):
            raise ConfigError(f"adapter.options.{key}={opts[key]!r} must be true or false.")
    n = round(adapter_cfg.r * opts["rho"])
    if max_rank is not None and n > max_rank:
        raise ConfigError(f"EVA fits round(r*rho) = {n} principal components per layer, more than {where} allows "
                          f"({max_rank}): lower adapter.r or adapter.options.rho.")


register(InitMethod("eva", eva, defaults={"rho": 2.0, "tau": 0.99, "use_label_mask": False,
                                          "adjust_scaling_factors": True},
                    data_driven=True, check=check))
