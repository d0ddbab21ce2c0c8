"""Typed config schemas and the checks that run before any model loads.

The dataclasses are registered with Hydra's ConfigStore as the schema of `configs/config.yaml`, so an
unknown key or a value of the wrong type fails at compose time. `validate(cfg)` then checks values and
combinations (rank against the target layers' shapes via a weightless meta-device model, unknown init
options, unsupported pairs) and raises ConfigError saying what to change.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lorabench.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = MISSING            # short name used in records and the leaderboard
    source: str = MISSING          # hub id, local path, "packaged:<name>" or "random:<arch>" (tests)
    kind: str = "causal_lm"        # causal_lm | seq2seq | seq_cls
    dtype: str = "float32"         # float32 | bfloat16 | float16
    revision: Optional[str] = None
    target_modules: List[str] = field(default_factory=lambda: ["all-linear"])
    trust_remote_code: bool = False


@dataclass
class AdapterConfig:
    name: str = MISSING            # row label in the leaderboard, e.g. "pissa" or "lora_ga"
    init: str = "lora"             # key in lorabench.adapters.REGISTRY
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: Optional[List[str]] = None   # None: the model's default targets
    use_rslora: bool = False       # scaling alpha/sqrt(r) instead of alpha/r
    use_dora: bool = False
    init_batches: int = 0          # data-driven inits: batches of the task's training data to read
    init_batch_size: int = 1
    options: Dict[str, Any] = field(default_factory=dict)   # method-specific; checked by the method
    optimizer: str = "adamw"       # adamw | lora_pro | allora: a training-side method (lorabench/optimizers/)
    optimizer_options: Dict[str, Any] = field(default_factory=dict)   # e.g. ALLoRA's eta
    paper: Optional[str] = None    # citation: paper and the official file followed


@dataclass
class TaskConfig:
    name: str = MISSING
    family: str = MISSING          # module in lorabench.tasks
    protocol: str = MISSING        # scoring protocol, recorded beside every number
    mini: bool = False             # an offline split of packaged data, not the paper's data
    train_size: Optional[int] = None
    valid_size: int = 0            # held-out training-distribution samples for periodic eval loss
    eval_size: Optional[int] = None   # None: the whole test set
    max_length: int = 512          # prompt + response tokens in training
    max_new_tokens: int = 256
    eval_batch_size: int = 16
    data_seed: int = 0             # fixes generated data and splits; independent of the run seed
    subset: Optional[str] = None   # family-specific: a GLUE task, a code benchmark, one commonsense dataset
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainerConfig:
    name: str = "default"
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: Optional[int] = None   # optimizer steps; overrides epochs
    batch_size: int = 8               # per process, per micro-batch
    grad_accum: int = 1
    global_batch: Optional[int] = None   # samples per optimizer step over all processes (a paper's batch size):
                                         # when set, grad_accum = global_batch / (batch_size x processes)
    schedule: str = "cosine"          # cosine | linear | constant
    min_lr_ratio: float = 0.0         # cosine decays to lr x this, not to 0 (GoRA's --lr-decay-ratio 0.1)
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: Optional[float] = 1.0
    precision: str = "fp32"           # fp32 | bf16
    eval_every: int = 0               # eval loss on the valid split every N steps and at the end (0: never;
                                      # the record's loss.valid is the final one either way)
    log_every: int = 1
    checkpoint_every: int = 0         # 0: no mid-run checkpoints
    gradient_checkpointing: bool = False
    num_workers: int = 0
    loraplus_lr_ratio: Optional[float] = None      # LoRA+ (Hayou et al. 2024): B's rate = lr x ratio (peft's
    loraplus_lr_embedding: Optional[float] = None  # create_loraplus_optimizer); embedding adapters' rate (its 1e-6)


@dataclass
class QuantConfig:
    name: str = "none"
    load_in_4bit: bool = False
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"


@dataclass
class LoggerConfig:
    name: str = "none"             # none | wandb
    project: str = "lorabench"
    mode: str = "offline"          # offline | online | disabled
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class DistributedConfig:
    """How the launched processes share the work (configs/distributed/). The number of processes is the
    launcher's (torchrun / accelerate launch / SLURM tasks), not a config value."""
    name: str = "ddp"
    zero_stage: int = 0                # 0: plain data parallel (DDP); 2 or 3: DeepSpeed ZeRO through Accelerate
    offload_optimizer: bool = False    # ZeRO: optimizer states in CPU memory
    offload_params: bool = False       # ZeRO-3: parameters in CPU memory


@dataclass
class CompareConfig:
    """How the leaderboard reads a comparison (configs/experiment/compare/); not part of a run's identity."""
    baseline: str = "lora"               # the adapter every method is compared with
    shared_lr: Optional[float] = None    # the one learning rate of the paper-setting table


@dataclass
class PathsConfig:
    root: str = "."
    results_dir: str = "results"          # records (committed)
    output_dir: str = "outputs"           # checkpoints, adapters, wandb (ignored by git)


@dataclass
class Config:
    model: ModelConfig = MISSING
    adapter: AdapterConfig = MISSING
    task: Optional[TaskConfig] = None
    trainer: TrainerConfig = MISSING
    quant: QuantConfig = MISSING
    logger: LoggerConfig = MISSING
    paths: PathsConfig = MISSING
    distributed: DistributedConfig = MISSING
    compare: CompareConfig = field(default_factory=CompareConfig)
    seed: int = 0
    experiment: Optional[str] = None     # paper table this run reproduces, set by experiment/ configs
    offline: Optional[str] = None        # an experiment's offline stand-in: the overrides that make it run on
                                         # packaged assets (hub.preflight suggests them; not part of the identity)
    eval_base: bool = False              # also score the base model before training
    init_losses: bool = False            # an init that changes the output (LoRA-One, GoRA) reports the init
                                         # batches' loss before and after it: one more forward pass over them
    eval_merged: bool = False            # score with the adapter merged into W (faster; rounding differs)
    save_adapter: bool = True
    rerun: bool = False                  # write a new record even if this config+seed already has one
    deterministic: bool = True
    threads: Optional[int] = None        # torch intra-op threads (null: torch's default); the float summation
                                         # order depends on it, so it is part of the run's identity


def register_schema() -> None:
    cs = ConfigStore.instance()
    cs.store(name="lorabench_schema", node=Config)
    for group, node in [("model", ModelConfig), ("adapter", AdapterConfig), ("task", TaskConfig),
                        ("trainer", TrainerConfig), ("quant", QuantConfig), ("logger", LoggerConfig),
                        ("paths", PathsConfig), ("distributed", DistributedConfig)]:
        cs.store(group=group, name=f"{group}_schema", node=node)


register_schema()


def sweep_stamp() -> str:
    """One name per sweep: made once by the process that starts it and inherited by every member's process
    through the environment (a SLURM job gets the submitter's), so members do not evaluate `${now:}` and the
    pid again, each into a directory of its own."""
    if not os.environ.get("LORABENCH_SWEEP_STAMP"):
        os.environ["LORABENCH_SWEEP_STAMP"] = f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"
    return os.environ["LORABENCH_SWEEP_STAMP"]


def per_init(init: str, default, *pairs):
    """`${per_init:${adapter.init},8,eva,4}` is 8, or 4 for EVA: a comparison's setting that one init needs
    otherwise (e.g. EVA's batch shape), written once for the whole sweep."""
    return dict(zip(pairs[::2], pairs[1::2])).get(init, default)


OmegaConf.register_new_resolver("per_init", per_init, replace=True)
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
OmegaConf.register_new_resolver("sweep_stamp", sweep_stamp, replace=True)
# `${path_join:${paths.root},${paths.output_dir}}`: an absolute output_dir stays absolute (a plain "root/dir"
# string made "/tmp/x" a folder "tmp/x" under the checkout).
OmegaConf.register_new_resolver("path_join", os.path.join, replace=True)

_DTYPES = {"float32", "bfloat16", "float16"}
_KINDS = {"causal_lm", "seq2seq", "seq_cls"}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: DictConfig, check_shapes: bool = True) -> None:
    """Everything that can be checked without weights. Raises ConfigError saying what to change."""
    from lorabench.adapters import REGISTRY, check_options
    from lorabench.tasks import FAMILIES
    from lorabench.tasks import family as family_module

    _check(cfg.get("task") is not None,
           "No task selected. Add task=<name>, e.g. task=gsm8k_mini (see configs/task/ for all).")
    m, a, t, tr = cfg.model, cfg.adapter, cfg.task, cfg.trainer
    _check(m.kind in _KINDS, f"model.kind={m.kind!r} is unknown; use one of {sorted(_KINDS)}.")
    _check(m.dtype in _DTYPES, f"model.dtype={m.dtype!r} is unknown; use one of {sorted(_DTYPES)}.")
    _check(a.init in REGISTRY, f"adapter.init={a.init!r} is not an init strategy; known: {', '.join(sorted(REGISTRY))}.")
    method = REGISTRY[a.init]
    if method.uses_adapter:
        _check(a.r > 0, f"adapter.r={a.r}: the rank must be a positive integer, e.g. adapter.r=8.")
        _check(a.alpha > 0, f"adapter.alpha={a.alpha}: alpha must be positive, e.g. adapter.alpha=16.")
    _check(0.0 <= a.dropout < 1.0, f"adapter.dropout={a.dropout} must be in [0, 1).")
    check_options(a)
    if method.data_driven:
        _check(a.init_batches > 0 and a.init_batch_size > 0,
               f"adapter={a.name} reads training batches at init: set adapter.init_batches>0 and adapter.init_batch_size>0.")
    _check(t.family in FAMILIES, f"task.family={t.family!r} is unknown; known: {', '.join(sorted(FAMILIES))}.")
    family = family_module(t.family)
    _check(t.protocol in family.PROTOCOLS,
           f"task.protocol={t.protocol!r} is not a {t.family} protocol; use one of {', '.join(family.PROTOCOLS)}.")
    family.check(t, m)
    _check(tr.lr > 0, f"trainer.lr={tr.lr} must be positive.")
    _check(tr.batch_size > 0 and tr.grad_accum > 0, "trainer.batch_size and trainer.grad_accum must be positive.")
    _check(tr.schedule in {"cosine", "linear", "constant"},
           f"trainer.schedule={tr.schedule!r}: use cosine, linear or constant.")
    _check(tr.precision in {"fp32", "bf16"}, f"trainer.precision={tr.precision!r}: use fp32 or bf16.")
    _check(tr.max_steps is None or tr.max_steps >= 0, "trainer.max_steps must be >= 0 (0 = evaluate without training).")
    _check(0 <= tr.warmup_ratio < 1, f"trainer.warmup_ratio={tr.warmup_ratio} must be in [0, 1).")
    _check(0 <= tr.min_lr_ratio < 1, f"trainer.min_lr_ratio={tr.min_lr_ratio} must be in [0, 1).")
    _check(tr.min_lr_ratio == 0 or tr.schedule == "cosine",
           f"trainer.min_lr_ratio={tr.min_lr_ratio} is the floor of the cosine schedule; with "
           f"trainer.schedule={tr.schedule} set it to 0 (or use trainer.schedule=cosine).")
    if tr.global_batch is not None:
        _check(tr.global_batch > 0, f"trainer.global_batch={tr.global_batch} must be positive.")
    if tr.loraplus_lr_ratio is not None:
        _check(tr.loraplus_lr_ratio > 0,
               f"trainer.loraplus_lr_ratio={tr.loraplus_lr_ratio} must be positive (GoRA's scripts use 16).")
        _check(method.uses_adapter, f"trainer.loraplus_lr_ratio sets the rate of LoRA's B; adapter={a.name} has no "
                                    "LoRA matrices: remove it.")
    _check(cfg.threads is None or cfg.threads > 0, f"threads={cfg.threads}: use a positive number, or null for "
                                                     "torch's default.")
    _check(not (cfg.eval_merged and cfg.quant.name != "none"),
           f"eval_merged=true would merge the adapter into the {cfg.quant.name} base, rounding it to 4 bits: "
           "set eval_merged=false, or quant=none.")
    from lorabench.quantize import check as check_quant

    check_quant(cfg)   # quant=nf4: which inits can train on a 4-bit base, and how (lorabench/quantize.py)
    from lorabench.cluster.distributed import check as check_distributed

    check_distributed(cfg)   # DeepSpeed: installed, and not with what it cannot run
    from lorabench.optimizers import check as check_optimizer

    check_optimizer(cfg)     # a training-side method (LoRA-Pro, ALLoRA) and the adapter it trains
    _check(method.zero or not cfg.distributed.zero_stage,
           f"adapter={a.name} keeps frozen factors inside its adapter modules (s*B*M*A), which DeepSpeed ZeRO "
           f"partitioning is not tested with: use distributed=ddp (the adapter is small enough to replicate).")
    if check_shapes and method.uses_adapter:
        _check_rank_fits(cfg)


def _check_rank_fits(cfg: DictConfig) -> None:
    """rank <= min(in, out) of every target layer, from a weightless (meta-device) model."""
    from lorabench.models import meta_model, target_linear_layers

    model = meta_model(cfg.model, num_labels=2)
    targets = list(cfg.adapter.target_modules or cfg.model.target_modules)
    layers = target_linear_layers(model, targets)
    _check(bool(layers), f"adapter.target_modules={targets} matches no linear layer of {cfg.model.name}.")
    name, (fan_in, fan_out) = min(layers.items(), key=lambda kv: min(kv[1]))
    from lorabench.adapters import REGISTRY, options

    method = REGISTRY[cfg.adapter.init]
    limit = min(fan_in, fan_out) // method.rank_factor
    where = f"{cfg.model.name}: target layer '{name}' is {fan_out}x{fan_in}"
    _check(cfg.adapter.r <= limit,
           f"adapter.r={cfg.adapter.r} is too large for {where}, which allows a rank of at most {limit}"
           f"{' (this init uses 2r singular vectors)' if method.rank_factor == 2 else ''}. "
           f"Lower adapter.r or narrow adapter.target_modules.")
    if method.check:
        method.check(cfg.adapter, options(cfg.adapter), limit, where)


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
