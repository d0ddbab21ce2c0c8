"""Reuse an initialized model across the members of an in-process sweep that differ only in what the init
does not read (the learning rate, the schedule, the number of steps): a comparison runs each data-driven
init once per (model, adapter, task data, seed) instead of once per learning rate. A reused init restores
the random state the init left behind, so a run is the same whether its init was computed or reused; the
record reports the init's measured cost either way, and says that it was reused."""
from __future__ import annotations

import copy
import json
import random
from dataclasses import replace

import numpy as np
import torch

_last: dict = {}


def key(cfg) -> str:
    from lorabench.config import to_container

    c = to_container(cfg)
    return json.dumps({k: c.get(k) for k in ("model", "adapter", "task", "quant", "seed", "deterministic")},
                      sort_keys=True, default=str)


def _rng() -> tuple:
    return (torch.random.get_rng_state(), random.getstate(), np.random.get_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _set_rng(state: tuple) -> None:
    torch.random.set_rng_state(state[0])
    random.setstate(state[1])
    np.random.set_state(state[2])
    if state[3] is not None:
        torch.cuda.set_rng_state_all(state[3])


def _usable(cfg, accelerator, enabled: bool) -> bool:
    """One process and a full-precision base only: elsewhere every run initializes its own."""
    return enabled and accelerator.num_processes == 1 and not cfg.quant.load_in_4bit


def holds(cfg, accelerator, enabled: bool = True) -> bool:
    """Whether `initialized` will return a copy (the base model need not be loaded)."""
    return _usable(cfg, accelerator, enabled) and _last.get("key") == key(cfg)


def initialized(cfg, accelerator, init, enabled: bool = True):
    """`init()` -> (model, report), or a copy of the last one if `cfg` asks for the same init."""
    if not _usable(cfg, accelerator, enabled):
        return init()
    k = key(cfg)
    if _last.get("key") == k:
        _set_rng(_last["rng"])
        return copy.deepcopy(_last["model"]), replace(_last["report"], reused=True)
    _last.clear()
    model, report = init()
    _last.update(key=k, model=copy.deepcopy(model), report=report, rng=_rng())
    return model, report


def clear() -> None:
    _last.clear()
