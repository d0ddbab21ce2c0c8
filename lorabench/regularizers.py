"""Auxiliary losses a method adds to the task loss, once per optimizer step: for now KaSA's (peft's
`LoraModel._get_kasa_loss`, beta * ||d||^2 + gamma * orthogonality of A and B, KaSA Eq. 9-11).

    extra = regularizer(model)     # None, or a function returning the term for the current parameters
"""
from __future__ import annotations

from typing import Callable

import torch


def regularizer(model) -> Callable[[], torch.Tensor] | None:
    """The model's auxiliary loss term, or None when its adapter has none."""
    while hasattr(model, "module"):   # DDP / DeepSpeed wrappers
        model = model.module
    configs = getattr(model, "peft_config", {})
    if not any(getattr(c, "kasa_config", None) is not None for c in configs.values()):
        return None
    lora_model = model.base_model
    return lambda: lora_model._get_kasa_loss()
