"""Helpers for several processes: shard work across ranks and gather results in the original order."""
from __future__ import annotations


def shard_and_gather(fn, items: list, accelerator=None) -> list:
    """Run fn on this rank's contiguous shard of `items`; every rank returns all results, in order."""
    if accelerator is None or accelerator.num_processes == 1:
        return fn(items)
    from accelerate.utils import gather_object

    n, k, r = len(items), accelerator.num_processes, accelerator.process_index
    lo, hi = n * r // k, n * (r + 1) // k
    return gather_object(fn(items[lo:hi]))
