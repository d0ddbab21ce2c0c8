"""The training loop: Accelerate, AdamW, warmup + cosine/linear schedule, gradient accumulation,
clipping, loss on response tokens only, periodic eval loss, checkpoint and exact resume. One loop for every
strategy (lorabench/cluster/distributed.py): under DeepSpeed, Accelerate's `backward` runs the engine's step at the
accumulation boundary, with clipping from the DeepSpeed config, and the optimizer wrapper's `step` is a no-op.

Batches are a pure function of (seed, step): each epoch's order comes from `data.epoch_order`, and every
process takes its slice of each global micro-batch. A resumed run therefore replays exactly the batches an
uninterrupted run would have seen, and the checkpoint carries the optimizer, scheduler and RNG states.

The loss of an optimizer step is the sum of token (or, for a classification head, example) losses over all
its micro-batches and processes divided by their total number of targets, so gradient accumulation and the number of processes do not
change what is optimized.
"""
from __future__ import annotations

import functools
import inspect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lorabench import checkpoint
from lorabench.cluster import preemption
from lorabench.costs import measure
from lorabench.data import IGNORE, by_length, collate, epoch_order, n_targets
from lorabench.regularizers import regularizer


@dataclass
class TrainResult:
    steps: int = 0
    tokens: int = 0                      # targets trained on, all processes: response tokens (examples for a head)
    seconds: float = 0.0
    peak_mb: float = 0.0
    curve: list[dict] = field(default_factory=list)   # per logged step: step, loss, lr, grad_norm, tokens[, eval_loss]
    resumed_from: int | None = None


class Interrupted(RuntimeError):
    """Raised by `stop_at` in tests to simulate a killed run."""


def plan_steps(n_samples: int, cfg, world: int) -> tuple[int, int]:
    """(micro-batches per epoch, total optimizer steps)."""
    micro_per_epoch = max(1, math.ceil(n_samples / (cfg.batch_size * world)))
    if cfg.max_steps is not None:
        return micro_per_epoch, int(cfg.max_steps)
    return micro_per_epoch, max(1, math.ceil(micro_per_epoch * cfg.epochs / cfg.grad_accum))


def micro_batch(samples, cfg, seed, world, rank, m, micro_per_epoch, pad_id):
    """Micro-batch number m (counted over the run): this process's slice, and whether the slice is real."""
    epoch, pos = divmod(m, micro_per_epoch)
    order = epoch_order(len(samples), seed, epoch)
    bs = cfg.batch_size
    glob = order[pos * bs * world:(pos + 1) * bs * world]
    mine = glob[rank * bs:(rank + 1) * bs]
    # A process left with nothing in an epoch's last batch runs a zero-weight stand-in, so that all
    # processes stay in step for the gradient all-reduce.
    return collate([samples[i] for i in (mine or glob[:1])], pad_id), bool(mine)


def loss_sum(model, batch, seq2seq: bool = False) -> tuple[torch.Tensor, int]:
    """Summed loss of a batch and what it sums over: next-token cross-entropy over response tokens (causal
    LM), over target tokens (seq2seq), or per-example cross-entropy / squared error (classification head)."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if labels.ndim == 1:
        logits = model(**inputs).logits.float()
        if labels.is_floating_point():   # regression head (STS-B): mean squared error, as transformers
            return F.mse_loss(logits.squeeze(-1), labels, reduction="sum"), labels.numel()
        return F.cross_entropy(logits, labels, reduction="sum"), labels.numel()
    if seq2seq:   # the model shifts labels right into decoder inputs; logits align with labels
        logits = model(**inputs, labels=labels).logits.float()
    else:
        labels = labels[:, 1:]
        keep = (labels != IGNORE).any(0).nonzero().squeeze(1)
        if len(keep) and keeps_logits(model):
            # the LM head only at positions that predict a response token: the same loss, while the head's
            # cost (a 49k-vocabulary matmul and softmax per position) no longer grows with the prompt
            logits = model(**inputs, logits_to_keep=keep).logits.float()
            labels = labels[:, keep]
        else:
            logits = model(**inputs).logits[:, :-1].float()
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")
    return loss, int((labels != IGNORE).sum())


def keeps_logits(model) -> bool:
    """Whether the causal LM under any DDP / DeepSpeed / peft wrapper takes transformers' `logits_to_keep`."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return _takes_logits_to_keep(type(model))


@functools.cache
def _takes_logits_to_keep(cls) -> bool:
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def is_seq2seq(model) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


@torch.no_grad()
def eval_loss(model, samples, batch_size, pad_id, accelerator, seq2seq: bool = False) -> float | None:
    if not samples:
        return None
    was = model.training
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = samples[rank::world]
    mine = [mine[i] for i in by_length(mine)]   # a sum over samples: any order, and similar lengths pad little
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for i in range(0, len(mine), batch_size):
        batch = {k: v.to(accelerator.device) for k, v in collate(mine[i:i + batch_size], pad_id).items()}
        with accelerator.autocast():
            s, n = loss_sum(model, batch, seq2seq)
        total += torch.tensor([s.item(), n], dtype=torch.float64, device=accelerator.device)
    total = accelerator.reduce(total, reduction="sum")
    model.train(was)
    return float(total[0] / total[1].clamp(min=1))


def make_optimizer(model, params: list, cfg, adapter=None) -> torch.optim.Optimizer:
    """AdamW, no decay on vectors; with trainer.loraplus_lr_ratio, LoRA+ through peft's own optimizer factory
    (B matrices and vectors at lr x ratio, embedding adapters at loraplus_lr_embedding); a training-side method
    (adapter.optimizer: LoRA-Pro, ALLoRA) from lorabench/optimizers/."""
    if adapter is not None and adapter.get("optimizer", "adamw") != "adamw":
        from lorabench import optimizers

        return optimizers.make(model, params, cfg, adapter)
    if cfg.loraplus_lr_ratio is not None:
        from peft.optimizers import create_loraplus_optimizer

        kwargs = {"loraplus_weight_decay": cfg.weight_decay}
        if cfg.loraplus_lr_embedding is not None:
            kwargs["loraplus_lr_embedding"] = cfg.loraplus_lr_embedding
        return create_loraplus_optimizer(model, torch.optim.AdamW, lr=cfg.lr, loraplus_lr_ratio=cfg.loraplus_lr_ratio,
                                         **kwargs)
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)



def make_scheduler(optimizer, cfg, total_steps: int):
    """Linear warmup, then cosine (to lr x min_lr_ratio), linear (to 0) or constant."""
    from transformers import get_scheduler

    schedule = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.schedule]
    floor = {}
    if cfg.min_lr_ratio:   # transformers' cosine_with_min_lr: lr x (r + (1 - r) x cosine factor)
        schedule, floor = "cosine_with_min_lr", {"scheduler_specific_kwargs": {"min_lr_rate": cfg.min_lr_ratio}}
    return get_scheduler(schedule, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
                         num_training_steps=total_steps, **floor)

def train(model, train_samples: list[dict], valid_samples: list[dict], cfg, *, seed: int, pad_id: int,
          accelerator, ckpt_dir: str | Path | None = None, log=None, stop_at: int | None = None,
          adapter=None) -> TrainResult:
    """Train `model` in place. Resumes from `ckpt_dir` if it holds a checkpoint. `adapter` (the adapter config)
    names a training-side method (adapter.optimizer); None: AdamW."""
    world, rank = accelerator.num_processes, accelerator.process_index
    if accelerator.gradient_accumulation_steps != cfg.grad_accum:
        raise ValueError(f"the Accelerator accumulates {accelerator.gradient_accumulation_steps} micro-batches but "
                         f"trainer.grad_accum={cfg.grad_accum}: build it with distributed.make_accelerator")
    micro_per_epoch, total_steps = plan_steps(len(train_samples), cfg, world)
    result = TrainResult()
    if total_steps == 0:
        return result
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    seq2seq = is_seq2seq(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, params, cfg, adapter)
    extra = regularizer(model)   # a method's auxiliary loss (KaSA), added once per optimizer step
    scheduler = make_scheduler(optimizer, cfg, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    start, tokens, curve = 0, 0, []
    ckpt = Path(ckpt_dir) if ckpt_dir else None
    if ckpt is not None and (found := checkpoint.resumable(ckpt, accelerator)):
        start, tokens, curve = checkpoint.load(found, model, optimizer, scheduler, accelerator)
        result.resumed_from = start
        if log is not None and accelerator.is_main_process:
            for point in curve:   # the tracker's run holds every step: what the killed attempt logged may be lost
                log(point, point["step"])

    def save(step):
        checkpoint.save(ckpt, model, optimizer, scheduler, step, tokens, curve, accelerator)

    model.train()
    device = accelerator.device
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
               disable=not accelerator.is_main_process)
    with measure() as cost, preemption.deferred():
        t_last, tok_last = time.perf_counter(), tokens
        for step in range(start, total_steps):
            if stop_at is not None and step == stop_at:
                bar.close()
                raise Interrupted(f"stopped at step {step} (test)")
            micro = [micro_batch(train_samples, cfg, seed, world, rank, step * cfg.grad_accum + j,
                                 micro_per_epoch, pad_id) for j in range(cfg.grad_accum)]
            counts = torch.tensor([n_targets(b, seq2seq) if real else 0 for b, real in micro], device=device)
            n_global = int(accelerator.reduce(counts.sum().clone(), reduction="sum"))
            loss_total = 0.0
            for batch, real in micro:
                batch = {k: v.to(device) for k, v in batch.items()}
                # accumulate(): no gradient sync (DDP) or engine step (DeepSpeed) before the last micro-batch
                with accelerator.accumulate(model), accelerator.autocast():
                    s, _ = loss_sum(model, batch, seq2seq)
                    s = s * (1.0 if real else 0.0)       # a padding micro-batch at the very end adds nothing
                    # x world: DDP and DeepSpeed average gradients over processes; x grad_accum: Accelerate
                    # and DeepSpeed divide by it, and this loss is already normalized over the whole step.
                    # The auxiliary term is added to every micro-batch unscaled: divided by grad_accum and
                    # averaged over processes as above, it enters each step's gradient exactly once.
                    accelerator.backward(s / max(n_global, 1) * world * cfg.grad_accum + (extra() if extra else 0))
                loss_total += s.item()
            grad_norm = None
            if cfg.max_grad_norm:   # clips (DDP); under DeepSpeed the engine clipped, this reads the norm
                grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                grad_norm = None if grad_norm is None else float(grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss = float(accelerator.reduce(torch.tensor(loss_total, device=device), reduction="sum")) / max(n_global, 1)
            tokens += n_global
            point = {"step": step + 1, "loss": step_loss, "lr": scheduler.get_last_lr()[0], "tokens": tokens}
            if grad_norm is not None:
                point["grad_norm"] = grad_norm
            last = step + 1 == total_steps
            # eval_every=0: no loss here; the record's loss.valid, scored right after training, is the final one
            if valid_samples and cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
                point["eval_loss"] = eval_loss(model, valid_samples, cfg.batch_size, pad_id, accelerator, seq2seq)
            if (step + 1) % max(cfg.log_every, 1) == 0 or last or "eval_loss" in point:
                curve.append(point)
                if log is not None and accelerator.is_main_process:
                    log(point, step + 1)
            now = time.perf_counter()
            tok_s = (tokens - tok_last) / max(now - t_last, 1e-9)
            t_last, tok_last = now, tokens
            bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{tok_s:.0f}", refresh=False)
            bar.update(1)
            if ckpt is None:
                continue
            if preemption.requested(accelerator):    # the cluster asked: checkpoint now, then let it act
                save(step + 1)
                preemption.act()
            elif cfg.checkpoint_every and ((step + 1) % cfg.checkpoint_every == 0 or last):
                save(step + 1)   # the last one too: an interruption during evaluation does not retrain
        bar.close()
    result.steps, result.tokens, result.curve = total_steps, tokens, curve
    result.seconds, result.peak_mb = cost.seconds, cost.peak_mb
    return result
