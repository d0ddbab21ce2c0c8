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
- like the official code peft cycles the batches until convergence, without an upper bound, and skips a
  batch with fewer than rho*r selected tokens; we stop with an error instead of looping forever when no batch
  is large enough (after one pass) or after MAX_PASSES passes.

use_label_mask: our batches carry labels = -100 on the prompt and padding, so True restricts the PCA to
response tokens. The official runs use False (svd_precompute.py default, bash/run_svd_precompute.sh; paper
F.5: only Code-Feedback masks the user turns): the attention mask alone, prompt tokens included. Our default
is the paper's False; peft's own default is True.

Several processes: the result does not depend on the number of processes. Incremental PCA truncates to
rho*r components and tests convergence after every batch, so the batches' grouping into steps matters:
letting every rank contribute its own batch at each step (peft's data-parallel use of
gather_distributed_inputs) equals one process fed the P batches of a step merged into one, not one process
over the same batches. Instead step b fits exactly batch b, as one process does: its owner (process b % P,
which holds it as its (b // P)-th, run.py) runs it, the other processes run a one-token stand-in and
contribute no rows, and peft's all-gather hands every rank batch b's rows. Every rank thus fits the same
PCA and takes the same decisions, and rank 0's result is broadcast at the end. The price: more processes do
not speed the PCA pass up (EVA's init takes under 1 % of the training time in paper Fig. 5). Checked with 2
CPU ranks: both ranks and one process over all batches give bit-identical adapters.
"""
from __future__ import annotations

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import lora_config
from lorabench.errors import ConfigError

MAX_PASSES = 50   # passes over the init batches before we give up on convergence


def eva(model, adapter_cfg, batches, ctx):
    from peft import EvaConfig, get_peft_model
    from peft.tuners.lora.eva import get_eva_state_dict, initialize_lora_eva_weights

    opts = options(adapter_cfg)
    acc = ctx.accelerator
    several = acc is not None and acc.num_processes > 1
    batches = _schedule(list(batches or []), acc)
    eva_config = EvaConfig(rho=float(opts["rho"]), tau=float(opts["tau"]), use_label_mask=bool(opts["use_label_mask"]),
                           adjust_scaling_factors=bool(opts["adjust_scaling_factors"]))
    # low_cpu_mem_usage: A and B stay on the meta device until EVA fills them (peft's recommended usage)
    peft_model = get_peft_model(model, lora_config(model, adapter_cfg, ctx.task_type, "eva", eva_config=eva_config),
                                low_cpu_mem_usage=True)

    probe = _Probe(len(batches))
    try:
        state = get_eva_state_dict(peft_model, batches, forward_fn=probe, prepare_model_inputs_fn=_selected_rows,
                                   prepare_layer_inputs_fn=_layer_rows, gather_distributed_inputs=several,
                                   show_progress_bar=False)
    except BaseException:
        _remove_hooks(peft_model)   # peft leaves its hooks on when a forward raises
        raise
    state = {k: v.detach().cpu() for k, v in state.items()}
    report = probe.report(state, len(batches))
    if several:   # identical by construction; the broadcast makes it so whatever the hardware
        from accelerate.utils import broadcast_object_list

        state, report = broadcast_object_list([state, report], from_process=0)
    initialize_lora_eva_weights(peft_model, eva_state_dict=state)
    ctx.extra.update(report)
    return peft_model


STAND_IN = "_eva_stand_in"   # marks a one-token forward whose rows are dropped


def _schedule(batches: list, acc) -> list:
    """The list this process hands to peft: one slot per global init batch b, in order. Batch b lives on
    process b % P as its (b // P)-th (run.py); the other processes fill the slot with a one-token stand-in
    whose rows they drop, so peft's gather at step b holds exactly batch b's rows on every process."""
    if acc is not None and acc.num_processes > 1:
        from accelerate.utils import gather_object

        P, k = acc.num_processes, acc.process_index
        total = sum(gather_object([len(batches)]))
        one = torch.ones(1, 1, dtype=torch.long)
        stand_in = {"input_ids": one, "attention_mask": one, STAND_IN: torch.tensor(True)}
        batches = [batches[b // P] if b % P == k else stand_in for b in range(total)]
    if not batches:
        raise ValueError("EVA got no init batches: set adapter.init_batches > 0.")
    return batches


def _selected_rows(inputs, peft_config):
    """peft's token selection (attention mask, and labels != -100 with use_label_mask); none for a stand-in."""
    from peft.tuners.lora.eva import prepare_model_inputs_fn_language_modeling

    if STAND_IN in inputs:
        return torch.empty(0, 2, dtype=torch.long, device=inputs["input_ids"].device)
    return prepare_model_inputs_fn_language_modeling(inputs, peft_config)


def _layer_rows(layer_input, rows, layer_name):
    """The inputs EVA decomposes: the selected tokens (peft's default), or, for a layer that sees one vector
    per example (a BERT pooler or classification head: input batch x hidden), the examples that have
    selected tokens. peft's default indexes such an input by token and fails."""
    x = layer_input[0] if isinstance(layer_input, (tuple, list)) else layer_input
    if x.ndim == 2:
        return x[torch.unique(rows[:, 0])]
    return x[rows.T.unbind()]


class _EndForward(Exception):
    pass


def _end_forward(*_):
    raise _EndForward


class _Probe:
    """peft's forward_fn: counts EVA's forward passes, stops a run that does not converge, and keeps peft's
    hooks (hash and PCA) from the first two passes so the report can name shared inputs and explained variance.

    It also makes each pass cost only what the PCA needs, which peft does not: the forward ends right after
    the last layer (in execution order) whose PCA is still running, and never computes the loss. Converged
    layers drop out as the passes go on (peft removes their hooks), so later passes get shorter; what every
    running hook sees is unchanged, so the result is bit-identical to peft's (tests/test_init_eva.py)."""

    def __init__(self, n_batches: int):
        self.calls, self.n = 0, n_batches
        self.hashes, self.pcas = {}, {}
        self.order: list[str] = []   # the hooked layers in the order the first forward ran them

    def __call__(self, model, inputs):
        from peft.tuners.lora.eva import HashHook, SVDHook, _Hook

        if self.calls == self.n + 1 and not any(hasattr(h.svd, "components_") for h in self.pcas.values()):
            n = max(h.n_components for h in self.pcas.values())   # every layer sees the same rows: none fitted
            raise RuntimeError(f"EVA: no init batch has the round(rho*r) = {n} selected tokens the PCA needs "
                               f"(peft skips smaller batches): raise adapter.init_batch_size, or lower adapter.r "
                               f"or adapter.options.rho.")
        if self.calls > MAX_PASSES * self.n:
            raise RuntimeError(f"EVA's PCA did not converge in {MAX_PASSES} passes over the init batches: lower "
                               f"adapter.options.tau, or raise adapter.init_batches / adapter.init_batch_size "
                               f"(each batch needs at least rho*r selected tokens).")
        hooked = [(n, m, h) for n, m in model.named_modules() for h in m._forward_hooks.values()
                  if isinstance(h, _Hook)]
        handles = [m.register_forward_hook(lambda *_, n=n: self.order.append(n))
                   for n, m, _ in hooked] if self.calls == 0 else []
        if self.calls > 0 and hooked:   # end the forward after the last layer whose PCA is still running
            last = max(hooked, key=lambda x: self.order.index(x[0]) if x[0] in self.order else len(self.order))[1]
            handles.append(last.register_forward_hook(_end_forward))
        # no loss: the hooks need the layer inputs only (a seq2seq model needs its labels for the decoder)
        drop = (STAND_IN,) if getattr(model.config, "is_encoder_decoder", False) else (STAND_IN, "labels")
        try:
            model(**{k: v for k, v in inputs.items() if k not in drop})
        except _EndForward:
            pass
        finally:
            for h in handles:
                h.remove()
        self.calls += 1
        for _, _, h in hooked if self.calls <= 2 else []:
            if isinstance(h, HashHook):
                self.hashes[h.name] = h.hashed_inputs[0]
            elif isinstance(h, SVDHook):
                self.pcas[h.name] = h

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
