"""This machine's physical limits, printed beside every benchmark's figures: fp32 matmul rate and memory bandwidth."""
from __future__ import annotations

import time

import torch


def limits() -> str:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    flops = 5 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9
    x = torch.empty(64 * 2 ** 20)    # 256 MB: far past the caches
    y = torch.empty_like(x)
    y.copy_(x)
    t = time.perf_counter()
    for _ in range(5):
        y.copy_(x)
    bandwidth = 5 * 2 * x.numel() * 4 / (time.perf_counter() - t) / 1e9   # read + write
    return f"fp32 matmul {flops:.0f} GFLOP/s (2048^2 sgemm), memory copy {bandwidth:.1f} GB/s (read + write)"
