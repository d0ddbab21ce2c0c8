"""The trainable state by parameter name, whatever the layout: what lets a checkpoint written under one
strategy or process count resume under another (checkpoint.py).

The portable form is {'params': {name: whole tensor}, 'moments': {name: {'exp_avg', 'exp_avg_sq'}},
'step': Adam's step count, 'lrs': each param group's current rate}. The plain loop holds whole tensors; DeepSpeed
holds, per rank, a slice of one flat fp32 partition per param group (ZeRO-1/2: every parameter whole too;
ZeRO-3: only its partition). `gather` assembles whole tensors from the slices (each element lives on exactly
one rank, so a sum over ranks of zero-filled slices is exact); `scatter` writes each rank's slices back.

Only AdamW-like states convert (step, exp_avg, exp_avg_sq): another optimizer's checkpoint (LoRA-Pro,
ALLoRA) is not portable and a cross-layout rerun starts over, saying so.

The slices are found from the ZeRO optimizers' own maps, checked against DeepSpeed 0.19.8: stages 1/2 give each
parameter a `_hp_mapping` (utils/tensor_fragment.py: its fragment of the flat partition and where that fragment
sits in the parameter), stage 3 a `grad_position` entry (runtime/zero/stage3.py: group, offset in the flat
partition, length) for the rank's contiguous partition of the flattened parameter. DeepSpeed's
safe_set_full_optimizer_state needs the optimizer state to exist already (Adam creates it at the first step)
and assumes even partitions, so the base optimizer's state is written here directly.
"""
from __future__ import annotations

import torch

ADAM_KEYS = ("exp_avg", "exp_avg_sq")
# Whole tensors on every rank: weights and two moments of this many trainable elements at most (LoRA of a 70B
# model is about 0.2e9 at r=16). Full fine-tuning under ZeRO gathers nothing (its checkpoint stays native).
MAX_ELEMENTS = 250_000_000


def _adam_like(state: dict) -> bool:
    return set(state) <= {"step", *ADAM_KEYS} and all(k in state for k in ADAM_KEYS)


def _step(state: dict) -> int:
    s = state["step"]
    return int(s.item() if torch.is_tensor(s) else s)


# ---- the plain loop ----------------------------------------------------------------------------------------

def plain_gather(named: dict[str, torch.nn.Parameter], optimizer, params: dict[str, torch.Tensor]) -> dict | None:
    """The portable state of a plain-loop model and its torch optimizer, or None if it is not Adam-like.
    `params`: the whole weights already saved; torch.save stores tensors it is given twice only once."""
    name_of = {id(p): n for n, p in named.items()}
    moments, steps = {}, set()
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            if not _adam_like(st) or id(p) not in name_of:
                return None
            moments[name_of[id(p)]] = {k: st[k].detach().cpu() for k in ADAM_KEYS}   # shared with state_dict()
            steps.add(_step(st))
    if len(steps) > 1:
        return None
    return {"params": params, "moments": moments,
            "step": steps.pop() if steps else 0, "lrs": [g["lr"] for g in optimizer.param_groups]}


def plain_scatter(portable: dict, named: dict[str, torch.nn.Parameter], optimizer) -> None:
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(portable["params"][n])
    name_of = {id(p): n for n, p in named.items()}
    for group, lr in zip(optimizer.param_groups, portable["lrs"]):
        group["lr"] = lr
        for p in group["params"]:
            m = portable["moments"].get(name_of.get(id(p)))
            if m is not None:
                optimizer.state[p] = {"step": torch.tensor(float(portable["step"])),
                                      **{k: m[k].to(p.device, p.dtype).clone().reshape(p.shape) for k in ADAM_KEYS}}


# ---- ZeRO -----------------------------------------------------------------------------------------------------

def _slices(engine, named: dict[str, torch.nn.Parameter], rank: int):
    """name -> (flat fp32 partition, start in it, start in the flattened parameter, length, numel, lp slice or
    None); length 0 where this rank holds none of the parameter."""
    zopt = engine.optimizer
    out = {}
    for n, p in named.items():
        if hasattr(p, "ds_id"):   # ZeRO-3
            group, offset, length = zopt.grad_position[zopt.get_param_id(p)]
            start = rank * p.ds_tensor.ds_numel
            length = max(0, min(length, p.ds_numel - start))
            out[n] = (zopt.fp32_partitioned_groups_flat[group], offset, start, length, p.ds_numel,
                      p.ds_tensor.data.view(-1).narrow(0, 0, length))
        else:                     # ZeRO-1/2: the parameter is whole on every rank
            m = getattr(p, "_hp_mapping", None)
            if m is None:
                out[n] = (None, 0, 0, 0, p.numel(), None)
                continue
            flat = zopt.single_partition_of_fp32_groups[m.param_group_index]
            out[n] = (flat, m.hp_fragment_address.start, m.lp_fragment_address.start, m.hp_fragment_address.numel,
                      p.numel(), None)
    return out


def _base_optimizer(engine):
    return engine.optimizer.optimizer


def _flats(engine) -> list[torch.Tensor]:
    """The flat fp32 partitions the base optimizer steps (its state is keyed by them). ZeRO-3 fills the base
    optimizer's param groups only for the duration of each sub-group's step, so they are read from ZeRO's lists."""
    zopt = engine.optimizer
    if hasattr(zopt, "fp32_partitioned_groups_flat"):
        return list(zopt.fp32_partitioned_groups_flat)
    return list(zopt.single_partition_of_fp32_groups)


def zero_gather(engine, named: dict[str, torch.nn.Parameter], accelerator) -> dict | None:
    """Collective: every rank calls it; the whole portable state on every rank, or None if not Adam-like."""
    if sum(p.ds_numel if hasattr(p, "ds_id") else p.numel() for p in named.values()) > MAX_ELEMENTS:
        return None
    base = _base_optimizer(engine)
    states = [base.state.get(p, {}) for p in _flats(engine)]
    ok = torch.tensor([float(all(not s or _adam_like(s) for s in states))])
    if accelerator.reduce(ok, reduction="sum").item() < accelerator.num_processes:
        return None
    steps = {_step(s) for s in states if s}
    step = torch.tensor([float(max(steps, default=0))])
    step = int(accelerator.reduce(step, reduction="sum").item() / accelerator.num_processes)
    shapes = {n: tuple(p.ds_shape) if hasattr(p, "ds_id") else tuple(p.shape) for n, p in named.items()}
    out = {"params": {}, "moments": {}, "step": step, "lrs": [g["lr"] for g in base.param_groups]}
    for n, (flat, off, start, length, numel, _) in _slices(engine, named, accelerator.process_index).items():
        for key in (None, *ADAM_KEYS):
            whole = torch.zeros(numel, dtype=torch.float32, device=accelerator.device)
            if length:
                src = flat if key is None else base.state.get(flat, {}).get(key)
                if src is not None:
                    whole[start:start + length] = src.detach().narrow(0, off, length).float()
            whole = accelerator.reduce(whole, reduction="sum").cpu().reshape(shapes[n])
            if key is None:
                out["params"][n] = whole
            else:
                out["moments"].setdefault(n, {})[key] = whole
    return out


def zero_scatter(portable: dict, engine, named: dict[str, torch.nn.Parameter], accelerator) -> None:
    """Write each rank's slices of the portable state: the model's parameters (ZeRO-1/2: whole; ZeRO-3: the
    rank's partition), the fp32 master partitions and the base optimizer's Adam state, then the group rates."""
    base = _base_optimizer(engine)
    for flat in _flats(engine):   # the state Adam would hold after `step` steps, filled slice by slice below
        base.state[flat] = {"step": torch.tensor(float(portable["step"])),
                            **{k: torch.zeros_like(flat, dtype=torch.float32) for k in ADAM_KEYS}}
    with torch.no_grad():
        for n, (flat, off, start, length, _, lp) in _slices(engine, named, accelerator.process_index).items():
            value = portable["params"][n].reshape(-1)
            p = named[n]
            if not hasattr(p, "ds_id"):
                p.data.copy_(value.to(p.dtype).reshape(p.shape))
            elif length:
                lp.copy_(value[start:start + length].to(lp.dtype))
            if not length:
                continue
            flat.data.narrow(0, off, length).copy_(value[start:start + length])
            for k in ADAM_KEYS:
                m = portable["moments"][n][k].reshape(-1)
                base.state[flat][k].narrow(0, off, length).copy_(m[start:start + length])
    for group, lr in zip(base.param_groups, portable["lrs"]):
        group["lr"] = lr
    accelerator.wait_for_everyone()
