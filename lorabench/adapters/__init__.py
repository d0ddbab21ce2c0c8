"""Adapter init strategies, registered by name: one interface for weight-only and data-driven inits.

    model, report = init_adapter(model, adapter_cfg, batches, task_type="CAUSAL_LM")

`batches` is an iterable of the task's own training batches (data-driven inits read
`adapter_cfg.init_batches` of them; weight-only inits ignore it). The result is a peft model (or the
base model for full fine-tuning) and an InitReport with time, peak memory and per-layer ranks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from lorabench.costs import measure
from lorabench.errors import ConfigError


@dataclass
class InitMethod:
    name: str
    fn: Callable[..., nn.Module]      # (model, adapter_cfg, batches, ctx) -> model
    defaults: dict[str, Any] = field(default_factory=dict)   # the method's options and their defaults
    data_driven: bool = False
    mutates_base: bool = False      # changes W (W_res = W - s*B*A); exported as rank-2r plain LoRA
    supports_4bit: bool = False     # may train on a 4-bit base (quant=nf4)
    # Under quant=nf4: True = the init reads W in full precision (SVD/QR of W), so the model loads in full
    # precision and the residual base is quantized after the init (QPiSSA); False = load in 4-bit and
    # init through the quantized model (lorabench/quantize.py).
    quantize_after_init: bool = False
    uses_adapter: bool = True       # False for full fine-tuning
    zero: bool = True               # False: refused under DeepSpeed ZeRO at config time (three-factor adapters)
    plain_pairs: bool = True        # A and B both train and s*B*A is the whole update (what LoRA-Pro, ALLoRA adjust)
    rank_factor: int = 1            # singular vectors used per rank (LoRA-GA: 2r), for the config-time rank check
    # (adapter_cfg, options, max_rank, where) -> None, raising ConfigError: method-specific config-time checks
    check: Callable[..., None] | None = None


@dataclass
class InitReport:
    method: str
    seconds: float = 0.0
    peak_mb: float = 0.0
    device: str = "cpu"
    ranks: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)   # whatever the paper reports about its init
    reused: bool = False            # a copy of an identical init earlier in the same sweep (init_cache)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class InitContext:
    task_type: str = "CAUSAL_LM"    # peft TaskType name
    accelerator: Any = None         # for data-driven inits across processes
    losses: bool = False            # report the init batches' loss before and after (config `init_losses`)
    extra: dict[str, Any] = field(default_factory=dict)   # an init writes what its report should carry


REGISTRY: dict[str, InitMethod] = {}


def register(method: InitMethod) -> InitMethod:
    REGISTRY[method.name] = method
    return method


def options(adapter_cfg: DictConfig) -> dict[str, Any]:
    """The method's options: its defaults overridden by adapter.options."""
    given = OmegaConf.to_container(adapter_cfg.options, resolve=True) if adapter_cfg.options else {}
    return {**REGISTRY[adapter_cfg.init].defaults, **given}


def check_options(adapter_cfg: DictConfig) -> None:
    method = REGISTRY[adapter_cfg.init]
    unknown = set(adapter_cfg.options or {}) - set(method.defaults)
    if unknown:
        known = ", ".join(sorted(method.defaults)) or "none"
        raise ConfigError(f"adapter.options has {sorted(unknown)}, unknown to init '{method.name}'. "
                          f"Its options are: {known}.")


def lora_ranks(model: nn.Module) -> dict[str, int]:
    ranks = {}
    for name, mod in model.named_modules():
        r = getattr(mod, "r", None)
        if isinstance(r, dict) and r and hasattr(mod, "lora_A"):
            ranks[name.removeprefix("base_model.model.")] = int(next(iter(r.values())))
    return ranks


def init_adapter(model: nn.Module, adapter_cfg: DictConfig, batches: Iterable | None = None,
                 task_type: str = "CAUSAL_LM", accelerator: Any = None,
                 losses: bool = False) -> tuple[nn.Module, InitReport]:
    method = REGISTRY.get(adapter_cfg.init)
    if method is None:
        raise ConfigError(f"adapter.init={adapter_cfg.init!r} is not an init strategy; known: {', '.join(sorted(REGISTRY))}.")
    ctx = InitContext(task_type=task_type, accelerator=accelerator, losses=losses)
    with measure() as cost:
        model = method.fn(model, adapter_cfg, batches, ctx)
    report = InitReport(method=method.name, seconds=cost.seconds, peak_mb=cost.peak_mb, device=cost.device,
                        ranks=lora_ranks(model), extra=ctx.extra)
    return model, report


# Importing the modules registers their methods.
from lorabench.adapters import (corda, eva, full_ft, gora, loftq, loldu, lora_ga, lora_one,  # noqa: E402,F401
                                lora_sb, nlora, peft_variants, weight_inits)
