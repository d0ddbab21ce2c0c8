"""Training checkpoints: everything a killed, requeued or preempted run needs to continue exactly.

Layout: <ckpt>/step-<N>/ holds one checkpoint (state.pt: step, tokens, curve, scheduler and, without
DeepSpeed, the trainable weights and optimizer; rng_rank<k>.pt per rank; with DeepSpeed, deepspeed/ with the
engine's partitioned weights and optimizer states, one file per rank), and <ckpt>/latest names the newest
complete one. `latest` is replaced atomically only after every rank has written, so a run killed while
saving resumes from the previous checkpoint.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from lorabench.distributed import is_deepspeed

LATEST = "latest"


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def latest(ckpt: Path) -> Path | None:
    pointer = ckpt / LATEST
    if not pointer.exists():
        return None
    path = ckpt / pointer.read_text().strip()
    return path if (path / "state.pt").exists() else None


def save(ckpt: Path, model, optimizer, scheduler, step: int, tokens: int, curve: list, accelerator) -> Path:
    path = ckpt / f"step-{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)   # a partial write of this very step, from a killed attempt
    accelerator.wait_for_everyone()
    path.mkdir(parents=True, exist_ok=True)
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    torch.save(rng, path / f"rng_rank{accelerator.process_index}.pt")
    state = {"step": step, "tokens": tokens, "curve": curve, "scheduler": scheduler.state_dict()}
    if is_deepspeed(accelerator):
        # Collective: every rank writes its partition of the trainable weights and optimizer states.
        model.save_checkpoint(str(path / "deepspeed"), tag="ckpt", exclude_frozen_parameters=True)
    elif accelerator.is_main_process:
        state["trainable"] = {n: p.detach().cpu().clone() for n, p in _trainable(accelerator.unwrap_model(model)).items()}
        state["optimizer"] = optimizer.state_dict()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(state, path / "state.pt")
        tmp = ckpt / f".{LATEST}.tmp"
        tmp.write_text(path.name)
        os.replace(tmp, ckpt / LATEST)          # atomic: the previous checkpoint stays valid until here
        for old in ckpt.glob("step-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load(path: Path, model, optimizer, scheduler, accelerator) -> tuple[int, int, list]:
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    if is_deepspeed(accelerator):
        loaded, _ = model.load_checkpoint(str(path / "deepspeed"), tag="ckpt", load_module_strict=False,
                                          load_optimizer_states=True, load_lr_scheduler_states=False)
        if loaded is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {path / 'deepspeed'}")
    else:
        params = _trainable(accelerator.unwrap_model(model))
        missing = set(params) ^ set(state["trainable"])
        if missing:
            raise RuntimeError(f"checkpoint {path} does not match this model's trainable parameters: {sorted(missing)[:5]}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state["trainable"][n])
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = path / f"rng_rank{accelerator.process_index}.pt"
    if rng_file.exists():
        rng = torch.load(rng_file, weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
    return state["step"], state["tokens"], state["curve"]
