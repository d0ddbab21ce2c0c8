"""The 4-bit (QLoRA-style NF4) base: when it is quantized, and how.

Policy, from two InitMethod fields (lorabench/adapters/__init__.py):
- supports_4bit=False: quant=nf4 is refused at config time (`check`).
- quantize_after_init=False (LoRA, gradient inits, EVA): the model loads in 4-bit (transformers +
  bitsandbytes, as QLoRA) and the init runs through the quantized model; an init that changes W
  re-quantizes the layer it offsets (common.set_base_weight).
- quantize_after_init=True (PiSSA, OLoRA, MiLoRA, LoftQ, CorDA: they decompose W): the model loads in full
  precision, the init runs there, then `quantize_residual` quantizes the residual base in place: QPiSSA as
  peft recommends (examples/pissa_finetuning: decompose in full precision, then load the residual in 4-bit).

`quantize_base` replaces the same layers transformers' bitsandbytes loading would (every nn.Linear but the
output head, tied weights and the model's keep-in-fp32 modules) by bitsandbytes Linear4bit, quantizing the
weight they hold; it gives the same packed weights as loading in 4-bit (tests/test_quant.py), works on CPU,
and is how random test models load in 4-bit. Both paths end in peft's prepare_model_for_kbit_training
(freeze the base, upcast fp16/bf16 non-4-bit weights to fp32); gradient checkpointing stays the trainer's
choice (trainer.gradient_checkpointing).
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from lorabench.errors import ConfigError

QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")   # torch attribute names


def check(cfg: DictConfig) -> None:
    """Config-time: can this init train on a 4-bit base? Raises ConfigError saying what to change."""
    from lorabench.adapters import REGISTRY, options

    q, a = cfg.quant, cfg.adapter
    if not q.load_in_4bit:
        return
    method = REGISTRY[a.init]
    if not method.uses_adapter:
        raise ConfigError(f"adapter={a.name} fine-tunes every weight and cannot train a 4-bit base: use quant=none.")
    if not method.supports_4bit:
        ok = ", ".join(sorted(n for n, m in REGISTRY.items() if m.supports_4bit))
        raise ConfigError(f"adapter.init={a.init} does not support a 4-bit base (quant={q.name}). "
                          f"Use quant=none, or an init that supports 4-bit: {ok}.")
    if q.quant_type not in QUANT_TYPES:
        raise ConfigError(f"quant.quant_type={q.quant_type!r}: bitsandbytes 4-bit types are {', '.join(QUANT_TYPES)}.")
    if q.compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"quant.compute_dtype={q.compute_dtype!r}: use one of {', '.join(COMPUTE_DTYPES)}.")
    if a.init == "loftq" and int(options(a)["bits"]) != 4:
        raise ConfigError(f"adapter.options.bits={options(a)['bits']} builds an int8 base, but quant={q.name} "
                          f"stores it in 4 bits: set adapter.options.bits=4, or use quant=none.")


def after_init(cfg: DictConfig) -> bool:
    """quant=nf4 and an init that decomposes W first: the base is quantized after the init."""
    from lorabench.adapters import REGISTRY

    return bool(cfg.quant.load_in_4bit) and REGISTRY[cfg.adapter.init].quantize_after_init


def at_load(cfg: DictConfig) -> DictConfig | None:
    """The quant config to load the base with: the run's in 4-bit, unless it is quantized after the init."""
    return cfg.quant if cfg.quant.load_in_4bit and not after_init(cfg) else None


def _linear4bit(lin: nn.Linear, quant_cfg: DictConfig) -> nn.Module:
    """A bitsandbytes Linear4bit holding lin's weight, quantized as transformers' 4-bit loading does."""
    import bitsandbytes as bnb

    with torch.device("meta"):   # the dtype by its torch name (config-checked): models imports us, not we it
        new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, lin.bias is not None,
                                compute_dtype=getattr(torch, quant_cfg.compute_dtype),
                                compress_statistics=quant_cfg.double_quant, quant_type=quant_cfg.quant_type)
    w = lin.weight.detach()
    new.weight = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=quant_cfg.double_quant,
                                   quant_type=quant_cfg.quant_type, module=new).to(w.device)
    if lin.bias is not None:
        new.bias = nn.Parameter(lin.bias.detach(), requires_grad=False)
    new.source_cls = type(lin)
    return new


def quantize_base(model: nn.Module, quant_cfg: DictConfig) -> nn.Module:
    """Replace, in place, every linear layer transformers' bitsandbytes loading would quantize by Linear4bit."""
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = HfQuantizer.get_modules_to_not_convert(model, None, getattr(model, "_keep_in_fp32_modules", None))
    for name, mod in list(model.named_modules()):
        if type(mod) is nn.Linear and should_convert_module(name, skip):
            model.set_submodule(name, _linear4bit(mod, quant_cfg))
    model.is_loaded_in_4bit = True   # what transformers sets; peft reads it to wrap Linear4bit layers
    return model


def prepare(model: nn.Module) -> nn.Module:
    """peft/QLoRA's preparation of a k-bit base; gradient checkpointing is left to the trainer."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def quantize_residual(model, cfg: DictConfig):
    """After an init that decomposed W (quant=nf4): the peft model rebuilt on its 4-bit residual base.

    As peft's QPiSSA recipe, in memory: keep the adapter, unload it (the base now holds W_res), quantize the
    base, and attach the same adapter again — peft then wraps each layer as its bitsandbytes Linear4bit LoRA
    layer, so forward, merge and save behave as for any QLoRA model.
    """
    if not after_init(cfg):
        return model
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config = model.peft_config["default"]
    init, config.init_lora_weights = config.init_lora_weights, True   # attach plainly, then load the init
    state = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    base = prepare(quantize_base(model.unload(), cfg.quant))
    model = get_peft_model(base, config)
    set_peft_model_state_dict(model, state)
    config.init_lora_weights = init   # the record and the saved initial adapter name the real init
    return model
