"""NLoRA and IntTune (Guo, Chang, Wu, EMNLP Findings 2025, arXiv 2502.14482): StructuredLoRA's s * B N A (an
r x r matrix N between B and A) with Nyström factors of W: the sampled columns C = W[:, :r], rows R = W[:r, :]
and their intersection W[:r, :r]. NLoRA trains B, N and A; IntTune trains N alone.

Checked against TracyGuo2001/NLoRA @b66f88d `peft/src/peft/tuners/lora/layer.py` (`LoraLayer.nlora_init`,
init_lora_weights="n_lora"; the forward `lora_B(lora_N(lora_A(x))) * scaling`), `nlora.py` (r = alpha = 8) and
`inttune.py` (lora_A and lora_B frozen):
    B = C = W[:, :r],   N = W[:r, :r],   A = R = W[:r, :],   W not offset
so the initial model is W + s * C W[:r, :r] R (its output changes at init). options.middle="pinv" takes the
Nyström approximation's own middle factor instead, N = pinv(W[:r, :r]), so that B N A = C W[:r,:r]^+ R, which
reproduces W on the r sampled rows and columns (the official embedding branch has this line commented out;
the linear branch, our default "official", uses W[:r, :r] itself).
Deviations: none in the math; the three factors live in our three-factor module (middle.MiddleA) instead of
the fork's `lora_N` ModuleDict, and the saved adapter is the plain LoRA B (N A), which `PeftModel.from_pretrained`
reloads without the fork.
A 4-bit base works: the factors are read from the dequantized W (common.base_weight) and W is not changed.
Not supported: DoRA, ZeRO (refused at config time).
"""
from __future__ import annotations

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import ADAPTER, attach, base_weight, lora_config, lora_layers
from lorabench.adapters.lora_sb import check_three_factor
from lorabench.adapters.middle import install
from lorabench.errors import ConfigError

MIDDLES = ("official", "pinv")


def nystrom_factors(w: torch.Tensor, r: int, middle: str = "official"):
    """B = W[:, :r] (out x r), N (r x r), A = W[:r, :] (r x in)."""
    core = w[:r, :r]
    N = torch.linalg.pinv(core.double()).to(w.dtype) if middle == "pinv" else core
    return w[:, :r].clone(), N.clone(), w[:r, :].clone()


def _init(train_factors: bool):
    @torch.no_grad()
    def init(model, adapter_cfg, batches, ctx):
        middle = options(adapter_cfg)["middle"]
        model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, False))   # set below
        for _, layer in lora_layers(model):
            B, N, A = nystrom_factors(base_weight(layer), layer.r[ADAPTER], middle)
            install(layer, A=A, M=N, B=B, train_A=train_factors, train_B=train_factors)
        model.peft_config[ADAPTER].init_lora_weights = False
        return model
    return init


def check(adapter_cfg, opts, max_rank, where):
    check_three_factor(adapter_cfg, opts, max_rank, where)
    if opts["middle"] not in MIDDLES:
        raise ConfigError(f"adapter.options.middle={opts['middle']!r}: use official (N = W[:r,:r], the official "
                          "code) or pinv (N = pinv(W[:r,:r]), the Nystrom approximation).")


register(InitMethod("nlora", _init(True), defaults={"middle": "official"}, supports_4bit=True, zero=False,
                    plain_pairs=False, check=check))
register(InitMethod("nlora_inttune", _init(False), defaults={"middle": "official"}, supports_4bit=True, zero=False,
                    plain_pairs=False, check=check))
