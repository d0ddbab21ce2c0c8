"""Shared by the init modules: a peft LoraConfig from our adapter config, and attaching it."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from peft import LoraConfig, get_peft_model
from torch import nn


def target_modules(model: nn.Module, adapter_cfg: DictConfig) -> list[str] | str:
    targets = adapter_cfg.target_modules
    if targets is None:  # the model config's default, attached by run.py
        targets = getattr(model, "_lorabench_targets", ["all-linear"])
    targets = list(OmegaConf.to_container(targets) if isinstance(targets, DictConfig) else targets)
    return "all-linear" if "all-linear" in targets else targets


def lora_config(model: nn.Module, adapter_cfg: DictConfig, task_type: str, init_lora_weights: Any = True,
                **extra) -> LoraConfig:
    return LoraConfig(
        r=adapter_cfg.r, lora_alpha=adapter_cfg.alpha, lora_dropout=adapter_cfg.dropout,
        target_modules=target_modules(model, adapter_cfg), task_type=task_type,
        use_rslora=adapter_cfg.use_rslora, use_dora=adapter_cfg.use_dora,
        init_lora_weights=init_lora_weights, **extra)


def scaling(adapter_cfg: DictConfig, r: int | None = None) -> float:
    r = r or adapter_cfg.r
    return adapter_cfg.alpha / (r ** 0.5 if adapter_cfg.use_rslora else r)


def attach(model: nn.Module, config: LoraConfig) -> nn.Module:
    return get_peft_model(model, config)
