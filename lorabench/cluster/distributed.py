"""Several processes: the Accelerator for a strategy (DDP, or DeepSpeed ZeRO-2/3 built from the YAML), the
process group from a launcher's or SLURM's environment, rank helpers, and ZeRO-3 parameter gathering.

The number of processes belongs to the launcher (torchrun, `accelerate launch`, SLURM tasks), never to the
config; the strategy (configs/distributed/) says how those processes share the work.
"""
from __future__ import annotations

import os
import socket
import torch

from lorabench.errors import ConfigError


def check(cfg) -> None:
    """Config-time checks: what a strategy cannot run is refused before a model loads."""
    d = cfg.distributed
    if d.zero_stage not in (0, 2, 3):
        raise ConfigError(f"distributed.zero_stage={d.zero_stage}: use 0 (DDP), 2 or 3 (distributed=ddp|zero2|zero3).")
    if d.offload_params and d.zero_stage != 3:
        raise ConfigError("distributed.offload_params needs ZeRO-3: use distributed=zero3_offload, or drop the offload.")
    if d.offload_optimizer and d.zero_stage == 0:
        raise ConfigError("distributed.offload_optimizer needs DeepSpeed: use distributed=zero2_offload or zero3_offload.")
    if not d.zero_stage:
        return
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ConfigError(f"distributed={d.name} needs DeepSpeed, which is not installed: "
                          "`make install` brings it (or `pip install deepspeed`), or use distributed=ddp.") from None
    if cfg.quant.load_in_4bit:
        # QLoRA keeps the base in packed 4-bit tensors: ZeRO-3 would have to partition them (transformers needs
        # bnb_4bit_quant_storage to match the compute dtype for that), and ZeRO-2 casts the whole module to the
        # engine's dtype, which unpacks nothing and breaks the quantized layers. Neither is supported here.
        raise ConfigError(f"quant={cfg.quant.name} with distributed={d.name} is not supported: a 4-bit base is "
                          "small enough to replicate, so use distributed=ddp (QLoRA across processes), "
                          "or quant=none with ZeRO.")


def slurm_environment() -> None:
    """Under SLURM with several tasks (a multi-GPU sweep member), each task is one rank: export the process
    group's variables from SLURM's (submitit's helper), unless a launcher such as torchrun already did."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "RANK" not in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        # Keep every GPU visible: Accelerate picks cuda:LOCAL_RANK itself.
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def global_rank() -> int:
    """This process's rank before any process group exists (0 for a single process)."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deepspeed_config(cfg, world: int) -> dict:
    """The DeepSpeed config, derived from the trainer and the strategy: nothing kept by hand per run."""
    d, tr = cfg.distributed, cfg.trainer
    zero = {"stage": d.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if d.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False   # the adapter is gathered by lorabench
    return {
        "train_micro_batch_size_per_gpu": tr.batch_size,
        "gradient_accumulation_steps": tr.grad_accum,
        "train_batch_size": tr.batch_size * tr.grad_accum * world,
        "gradient_clipping": float(tr.max_grad_norm or 0.0),   # Accelerate's clip_grad_norm_ only reads it back
        "bf16": {"enabled": tr.precision == "bf16"},
        "zero_optimization": zero,
        # The trainer's own AdamW (the same optimizer as DDP), also when its states live in CPU memory.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def apply_global_batch(tr, world: int) -> None:
    """trainer.global_batch: set grad_accum so that batch_size x grad_accum x processes equals it, so that a paper
    experiment optimizes the same on 1 or 8 GPUs; a split that does not divide it is a config error."""
    if tr.global_batch is None:
        return
    if tr.global_batch % (tr.batch_size * world):
        fits = [b for b in range(1, tr.global_batch + 1) if tr.global_batch % (b * world) == 0]
        raise ConfigError(f"trainer.global_batch={tr.global_batch} is not a multiple of trainer.batch_size x processes "
                          f"= {tr.batch_size} x {world}: " + (f"set trainer.batch_size to one of {fits}." if fits else
                          f"no per-process batch fits; run on a number of processes that divides {tr.global_batch}."))
    tr.grad_accum = tr.global_batch // (tr.batch_size * world)


def make_accelerator(cfg):
    """The run's Accelerator: DDP (or one process), or DeepSpeed ZeRO with the config built from the YAML."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    AcceleratorState._reset_state()   # a fresh setting per run (tests run several in one process)
    slurm_environment()
    apply_global_batch(cfg.trainer, int(os.environ.get("WORLD_SIZE", "1")))
    cuda = torch.cuda.is_available()
    grad_accum = cfg.trainer.grad_accum
    mixed = "bf16" if cfg.trainer.precision == "bf16" else "no"
    if not cfg.distributed.zero_stage:
        return Accelerator(cpu=not cuda, mixed_precision=mixed, gradient_accumulation_steps=grad_accum)
    # DeepSpeed initializes its process group from these variables; a single process has none of them.
    if "LOCAL_RANK" not in os.environ:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": os.environ.get("MASTER_PORT") or str(free_port())})
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(cfg, world), zero3_init_flag=False)
    # On CPUs Accelerate finds no backend for DeepSpeed and falls back to counting one process: name gloo.
    handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]
    accelerator = Accelerator(deepspeed_plugin=plugin, mixed_precision=mixed, gradient_accumulation_steps=grad_accum,
                              kwargs_handlers=handlers)
    # Accelerate registers the ZeRO-3 config with transformers even with zero3_init_flag=False, and then
    # from_pretrained loads every weight already partitioned. The inits need the whole W on every rank (peft's
    # "PiSSA is not compatible with ZeRO-3" comes from there): load whole, init, and let prepare() partition.
    from transformers.integrations import unset_hf_deepspeed_config

    plugin.dschf = None
    unset_hf_deepspeed_config()
    return accelerator


def is_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def zero_stage(accelerator) -> int:
    if not is_deepspeed(accelerator):
        return 0
    return int(accelerator.state.deepspeed_plugin.deepspeed_config["zero_optimization"]["stage"])


def unwrap(model, accelerator):
    """The trained model as a plain module on every rank, for evaluation and saving. Under ZeRO-3 each
    parameter is gathered whole and the engine's hooks are removed: with them, every forward would gather
    again, and ranks that generate different numbers of tokens would wait on each other for ever. The memory
    is the full model's, which the init needed already."""
    model = accelerator.unwrap_model(model)
    if zero_stage(accelerator) != 3:
        return model
    import deepspeed

    params = dict(model.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None):
        whole = {n: p.data.detach().clone() for n, p in params.items()}
    accelerator.deepspeed_engine_wrapped.engine.destroy()     # removes the partitioning hooks
    for n, p in params.items():
        p.data = whole[n]
    return model


def rank_checksums(model, accelerator) -> list[str]:
    """A digest of each rank's trainable weights, in rank order: every record shows that all ranks ended
    with the same adapter (they must: the same init, the same all-reduced updates)."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    if accelerator.num_processes == 1:
        return [h.hexdigest()[:16]]
    from accelerate.utils import gather_object

    return gather_object([h.hexdigest()[:16]])


def shard_and_gather(fn, items: list, accelerator=None) -> list:
    """Run fn on this rank's contiguous shard of `items`; every rank returns all results, in order."""
    if accelerator is None or accelerator.num_processes == 1:
        return fn(items)
    from accelerate.utils import gather_object

    n, k, r = len(items), accelerator.num_processes, accelerator.process_index
    lo, hi = n * r // k, n * (r + 1) // k
    return gather_object(fn(items[lo:hi]))
