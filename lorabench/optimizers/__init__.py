"""Training-side methods, chosen by `adapter.optimizer` (an adapter config can name one, so a comparison lists it
in its `adapter:` sweep; `adapter=pissa adapter.optimizer=lora_pro` composes one with any plain-LoRA init):

- adamw: torch's AdamW (train.make_optimizer; LoRA+ through peft when trainer.loraplus_lr_ratio is set).
- lora_pro: LoRA-Pro (Wang et al. 2024, arXiv 2407.18242), lorabench/optimizers/lora_pro.py.
- allora: ALLoRA (Huang & Balestriero 2024, arXiv 2410.09692), lorabench/optimizers/allora.py.

Both are written in this package: neither torch nor peft has them. Each is a torch Optimizer whose state lives in
`self.state` per parameter, so checkpoints, Accelerate's wrapper and the LR scheduler treat them as AdamW.
"""
from __future__ import annotations

import torch
from torch import nn

from lorabench.errors import ConfigError
from lorabench.optimizers.allora import ALLoRA
from lorabench.optimizers.lora_pro import LoRAPro

NAMES = ("adamw", "lora_pro", "allora")
DEFAULTS = {"adamw": {}, "lora_pro": {}, "allora": {"eta": 2.0}}


def options(adapter_cfg) -> dict:
    given = dict(adapter_cfg.get("optimizer_options") or {})
    return {**DEFAULTS[adapter_cfg.optimizer], **given}


def check(cfg) -> None:
    """Config-time: the method exists, its options are known, and the adapter is one it can train."""
    from lorabench.adapters import REGISTRY

    a = cfg.adapter
    name = a.optimizer
    if name not in NAMES:
        raise ConfigError(f"adapter.optimizer={name!r} is unknown; use one of {', '.join(NAMES)}.")
    unknown = set(a.get("optimizer_options") or {}) - set(DEFAULTS[name])
    if unknown:
        raise ConfigError(f"adapter.optimizer_options has {sorted(unknown)}, unknown to {name}; its options are: "
                          f"{', '.join(DEFAULTS[name]) or 'none'}.")
    if name == "adamw":
        return
    method = REGISTRY[a.init]
    if not (method.uses_adapter and method.plain_pairs):
        raise ConfigError(f"adapter.optimizer={name} adjusts the steps of plain LoRA pairs (A, B both trained); "
                          f"init '{a.init}' trains other factors. Use it with a plain-LoRA init (lora, pissa, "
                          "lora_ga, ...), or adapter.optimizer=adamw.")
    if name == "lora_pro" and a.use_dora:
        raise ConfigError("adapter.optimizer=lora_pro projects onto the updates s*B*A can make; DoRA's magnitude "
                          "changes them. Set adapter.use_dora=false.")
    if cfg.trainer.loraplus_lr_ratio is not None:
        raise ConfigError(f"trainer.loraplus_lr_ratio is AdamW's (LoRA+); adapter.optimizer={name} sets its own "
                          "steps. Remove one of them.")
    if cfg.distributed.zero_stage:
        raise ConfigError(f"adapter.optimizer={name} needs each LoRA matrix whole on every process; DeepSpeed ZeRO "
                          "partitions them. Use distributed=ddp.")
    if name == "allora" and not options(a)["eta"] > 0:
        raise ConfigError(f"adapter.optimizer_options.eta={options(a)['eta']} must be positive.")


def lora_pairs(model: nn.Module) -> list[tuple[nn.Parameter, nn.Parameter, float]]:
    """(A, B, scaling) of every LoRA layer whose A and B both train."""
    from lorabench.adapters.common import ADAPTER, lora_layers

    while hasattr(model, "module"):
        model = model.module
    out = []
    for _, layer in lora_layers(model):
        A, B = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        if isinstance(A, nn.Parameter) and A.requires_grad and B.requires_grad:
            out.append((A, B, float(layer.scaling[ADAPTER])))
    return out


def make(model: nn.Module, params: list, trainer_cfg, adapter_cfg) -> torch.optim.Optimizer:
    name, opts = adapter_cfg.optimizer, options(adapter_cfg)
    pairs = lora_pairs(model)
    if not pairs:
        raise ValueError(f"adapter.optimizer={name}: the model has no trainable LoRA pairs")
    paired = {id(p) for A, B, _ in pairs for p in (A, B)}
    others = [p for p in params if id(p) not in paired]
    lr, wd = trainer_cfg.lr, trainer_cfg.weight_decay
    if name == "lora_pro":
        groups = [{"params": [A, B], "scaling": s, "kind": "pair", "weight_decay": wd} for A, B, s in pairs]
        cls = LoRAPro
    else:
        groups = [{"params": [p for A, B, _ in pairs for p in (A, B)], "kind": "rows", "weight_decay": wd,
                   "eta": float(opts["eta"])}]
        cls = ALLoRA
    groups += [{"params": [p for p in others if p.ndim >= 2], "kind": "adamw", "weight_decay": wd},
               {"params": [p for p in others if p.ndim < 2], "kind": "adamw", "weight_decay": 0.0}]
    return cls([g for g in groups if g["params"]], lr=lr)

