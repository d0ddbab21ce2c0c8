"""Time and peak memory of one phase (init, train, eval): accelerator memory on CUDA, process RSS on CPU."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class Cost:
    seconds: float = 0.0
    peak_mb: float = 0.0
    device: str = "cpu"


def _rss_peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_rss_peak() -> None:
    """Start a phase's peak from the memory in use: hand the heap a previous phase freed back to the OS
    (glibc malloc_trim), so memory the allocator kept does not absorb this phase's own growth, then reset the
    peak RSS (Linux: writing 5 to clear_refs resets VmHWM). Peaks still vary from run to run with glibc's
    dynamic mmap threshold (a LoRA step: 2.9 or 3.9 GB); scripts/bench_init.py fixes it for its memory figures."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


@contextmanager
def measure():
    cost = Cost(device="cuda" if torch.cuda.is_available() else "cpu")
    if cost.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_rss_peak()
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        if cost.device == "cuda":
            torch.cuda.synchronize()
            cost.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            cost.peak_mb = _rss_peak_mb()
        cost.seconds = time.perf_counter() - t0


def phases(costs: dict) -> str:
    """'wall time 61.2 s: load 3.1, base eval 9.8, init 0.4, train 28.6, eval 16.1, other 3.2' (a record's costs)."""
    init = 0.0 if costs.get("init_reused") else costs["init_seconds"]   # a reused init cost this run nothing
    parts = [("load", costs["load_seconds"]), ("base eval", costs["base_eval_seconds"]),
             ("init", init), ("train", costs["train_seconds"]), ("eval", costs["eval_seconds"])]
    parts = [(k, v) for k, v in parts if v >= 0.05]
    total = costs["run_seconds"]
    parts.append(("other", max(0.0, total - sum(v for _, v in parts))))   # checkpoints, adapter and record writing
    return f"wall time {total:.1f} s: " + ", ".join(f"{k} {v:.1f}" for k, v in parts)
