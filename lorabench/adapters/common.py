"""Shared by the init modules: a peft LoraConfig from our adapter config, attaching it, and reading/writing
the A, B and base weight of each LoRA layer (4-bit aware) for the inits that compute them themselves."""
from __future__ import annotations

from typing import Any

import torch
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


# --- Helpers for inits that compute A and B themselves ------------------------------------------------------------

ADAPTER = "default"


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name without the peft prefix, LoraLayer) for every layer carrying our adapter, in module order."""
    from peft.tuners.lora import LoraLayer

    return [(name.removeprefix("base_model.model."), mod) for name, mod in model.named_modules()
            if isinstance(mod, LoraLayer) and ADAPTER in mod.lora_A]


def transposed(layer: nn.Module) -> bool:
    """GPT-2's Conv1D stores W as in x out."""
    return bool(getattr(layer, "fan_in_fan_out", False))


def base_weight(layer: nn.Module) -> torch.Tensor:
    """W of a LoraLayer's base layer as fp32, out x in; dequantized when the base is 4/8-bit."""
    from peft.utils.integrations import dequantize_module_weight

    w = dequantize_module_weight(layer.get_base_layer()).detach().float()
    return w.T if transposed(layer) else w


def set_base_weight(layer: nn.Module, w: torch.Tensor) -> None:
    """Write an fp32 out x in W back into the base layer, re-quantizing a bitsandbytes weight as it was."""
    base = layer.get_base_layer()
    old = base.weight
    w = w.T.contiguous() if transposed(layer) else w.contiguous()
    kind = old.__class__.__name__
    if kind == "Params4bit":   # rebuild the 4-bit parameter from the new full-precision W (as peft's olora_init)
        base.weight = old.__class__(w.to(old.device), requires_grad=False, quant_type=old.quant_type,
                                    quant_storage=old.quant_storage, compress_statistics=old.compress_statistics,
                                    blocksize=old.blocksize, module=getattr(old, "module", None)).to(old.device)
    elif kind == "Int8Params":
        base.weight = old.__class__(w.to(old.device), requires_grad=False,
                                    has_fp16_weights=old.has_fp16_weights).to(old.device)
    else:
        old.data = w.to(device=old.device, dtype=old.dtype)


def set_lora(layer: nn.Module, A: torch.Tensor, B: torch.Tensor) -> None:
    """Set lora_A (r x in) and lora_B (out x r), kept in the adapter's own dtype and device."""
    for mod, t in ((layer.lora_A[ADAPTER], A), (layer.lora_B[ADAPTER], B)):
        mod.weight.data = t.to(device=mod.weight.device, dtype=mod.weight.dtype).contiguous()


def offset_base(layer: nn.Module) -> None:
    """W <- W - s*B*A with the layer's own scaling (rsLoRA aware), so the model's output is unchanged at init.
    Computed in fp32 from the adapter as stored, so W_res + s*B*A == W up to W's own dtype rounding."""
    A = layer.lora_A[ADAPTER].weight.detach().float()
    B = layer.lora_B[ADAPTER].weight.detach().float()
    w = base_weight(layer)
    set_base_weight(layer, w - layer.scaling[ADAPTER] * (B.to(w.device) @ A.to(w.device)))


def refresh_dora(layer: nn.Module) -> None:
    """With DoRA, peft sets the magnitude from W + s*B*A when the adapter is attached; an init that sets A and
    B (or W) afterwards rebuilds it from the weights as they now are, as peft does after its own inits."""
    if layer.use_dora.get(ADAPTER):
        layer.lora_magnitude_vector[ADAPTER].update_layer(
            base_layer=layer.get_base_layer(), lora_A=layer.lora_A[ADAPTER].weight,
            lora_B=layer.lora_B[ADAPTER].weight, scaling=layer.scaling[ADAPTER])
