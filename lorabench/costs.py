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
    try:  # Linux: writing 5 resets the peak RSS (VmHWM) so each phase gets its own peak.
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
