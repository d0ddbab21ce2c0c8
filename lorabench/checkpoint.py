"""Training checkpoints: everything a killed, requeued or preempted run needs to continue exactly.

Layout: <ckpt>/step-<N>/ holds one checkpoint (state.pt: step, tokens, curve, scheduler and, without
DeepSpeed, the trainable weights and optimizer; rng_rank<k>.pt per rank; with DeepSpeed, deepspeed/ with the
engine's partitioned weights and optimizer states, one file per rank; and `portable`, the same trainable state
whole and by parameter name, cluster/portable_state.py), and <ckpt>/latest names the newest complete one. The
same layout resumes from its native files; another strategy or process count from the portable state. A
checkpoint is written as .step-<N>.tmp and renamed when whole, and `latest` is replaced atomically only after
that, so a run killed while saving resumes from the previous checkpoint and no partial folder is ever taken for
a whole one.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from lorabench.cluster import portable_state
from lorabench.cluster.distributed import is_deepspeed, zero_stage

LATEST = "latest"
LAYOUT = "layout.json"


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def latest(ckpt: Path) -> Path | None:
    pointer = ckpt / LATEST
    if not pointer.exists():
        return None
    path = ckpt / pointer.read_text().strip()
    return path if (path / "state.pt").exists() else None


def layout(accelerator) -> dict:
    """How a checkpoint's states are split: DeepSpeed's files are one partition per rank of one ZeRO stage."""
    return {"deepspeed": is_deepspeed(accelerator), "zero_stage": zero_stage(accelerator),
            "world": accelerator.num_processes}


def _written_under(path: Path) -> dict:
    if (path / LAYOUT).exists():
        return json.loads((path / LAYOUT).read_text())
    return {"deepspeed": (path / "deepspeed").is_dir(), "zero_stage": None,   # written before layout.json
            "world": len(list(path.glob("rng_rank*.pt")))}


def _native(then: dict, now: dict) -> bool:
    """Whether a checkpoint written under `then` loads from its own files under `now`: the plain loop's whole
    tensors under any process count, DeepSpeed's partitions under the same ZeRO stage and world size."""
    same_partitions = then["world"] == now["world"] and then["zero_stage"] in (None, now["zero_stage"])
    return then["deepspeed"] == now["deepspeed"] and (not now["deepspeed"] or same_partitions)


def resumable(ckpt: Path, accelerator, say=None) -> Path | None:
    """The newest checkpoint this layout can resume, or None: natively, or through its portable state under
    another layout (DDP <-> ZeRO, ZeRO-3 on 2 processes -> 1). A checkpoint with neither (written before
    portable states, or by an optimizer that is not Adam-like) used to fail on every rerun until the folder was
    deleted by hand: it is said once here and the run starts over."""
    found = latest(ckpt)
    if found is None:
        return None
    then, now = _written_under(found), layout(accelerator)
    if _native(then, now) or then.get("portable"):
        return found
    if accelerator.is_main_process:
        (say or _say)(f"checkpoint {found} was written under {_name(then)} and cannot resume under {_name(now)} "
            f"(it has no portable state): starting over from step 0 (the old checkpoint is removed)")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(found, ignore_errors=True)
        (ckpt / LATEST).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return None


def _say(msg: str) -> None:
    print(f"[lorabench] {msg}", file=sys.stderr, flush=True)


def _name(lay: dict) -> str:
    kind = f"ZeRO-{lay['zero_stage']}" if lay["deepspeed"] and lay["zero_stage"] else \
        "DeepSpeed" if lay["deepspeed"] else "the plain loop (DDP)"
    return f"{kind} on {lay['world']} process{'es' if lay['world'] != 1 else ''}"


def save(ckpt: Path, model, optimizer, scheduler, step: int, tokens: int, curve: list, accelerator) -> Path:
    """Write the checkpoint of `step` into a hidden `.step-N.tmp`, renamed to `step-N` once every rank has
    written: a write cut short (killed, disk full) never leaves a folder that looks whole, and on an error this
    process removes what it wrote before raising."""
    path, tmp = ckpt / f"step-{step:07d}", ckpt / f".step-{step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)   # a partial write of this very step, from a killed attempt
    accelerator.wait_for_everyone()
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
        torch.save(rng, tmp / f"rng_rank{accelerator.process_index}.pt")
        state = {"step": step, "tokens": tokens, "curve": curve, "scheduler": scheduler.state_dict()}
        named = _trainable(accelerator.unwrap_model(model))
        if is_deepspeed(accelerator):
            # Collective: every rank writes its partition of the trainable weights and optimizer states.
            model.save_checkpoint(str(tmp / "deepspeed"), tag="ckpt", exclude_frozen_parameters=True)
            state["portable"] = portable_state.zero_gather(model, named, accelerator)   # collective too
        elif accelerator.is_main_process:
            state["trainable"] = {n: p.detach().cpu().clone() for n, p in named.items()}
            state["optimizer"] = optimizer.state_dict()
            state["portable"] = portable_state.plain_gather(named, optimizer, state["trainable"])
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / LAYOUT).write_text(json.dumps({**layout(accelerator), "portable": state["portable"] is not None}))
            torch.save(state, tmp / "state.pt")
            shutil.rmtree(path, ignore_errors=True)   # this step saved before (a resumed run): replaced whole
            os.replace(tmp, path)
            pointer = ckpt / f".{LATEST}.tmp"
            pointer.write_text(path.name)
            os.replace(pointer, ckpt / LATEST)          # atomic: the previous checkpoint stays valid until here
            for old in [*ckpt.glob("step-*"), *ckpt.glob(".step-*.tmp")]:
                if old != path:
                    shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    accelerator.wait_for_everyone()
    return path


def _same_names(path: Path, params: dict, saved: dict) -> None:
    if missing := set(params) ^ set(saved):
        raise RuntimeError(f"checkpoint {path} does not match this model's trainable parameters: {sorted(missing)[:5]}")


def load(path: Path, model, optimizer, scheduler, accelerator, say=None) -> tuple[int, int, list]:
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    then, now = _written_under(path), layout(accelerator)
    if not _native(then, now):
        if accelerator.is_main_process:
            (say or _say)(f"checkpoint {path} was written under {_name(then)}: resuming under {_name(now)} from "
                          "its portable state (whole tensors by parameter name)")
        named = _trainable(accelerator.unwrap_model(model))
        _same_names(path, named, state["portable"]["params"])
        if is_deepspeed(accelerator):
            portable_state.zero_scatter(state["portable"], model, named, accelerator)
        else:
            portable_state.plain_scatter(state["portable"], named, optimizer)
    elif is_deepspeed(accelerator):
        loaded, _ = model.load_checkpoint(str(path / "deepspeed"), tag="ckpt", load_module_strict=False,
                                          load_optimizer_states=True, load_lr_scheduler_states=False)
        if loaded is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {path / 'deepspeed'}")
    else:
        params = _trainable(accelerator.unwrap_model(model))
        _same_names(path, params, state["trainable"])
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
