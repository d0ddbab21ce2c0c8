"""pass@k: the unbiased estimator of Chen et al. 2021 (Codex paper), as in bigcode's code_eval.py.

With n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that k samples drawn without
replacement include a passing one. The product form below avoids the huge binomials.
"""
from __future__ import annotations

import operator
from collections.abc import Iterable

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k)/C(n, k), computed as 1 - prod(1 - k / arange(n-c+1, n+1)); 1.0 when n - c < k."""
    n, c, k = operator.index(n), operator.index(c), operator.index(k)   # TypeError for 5.0: counts are integers
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass@k needs n >= 1 and 0 <= c <= n; got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples per problem; got n={n} (generate more samples "
                         f"or drop k={k})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: list[tuple[int, int]], ks: int | Iterable[int]) -> dict[str, float]:
    """{'pass@k': mean over problems of pass_at_k(n_i, c_i, k)} for each k; counts = [(n_i, c_i), ...].

    Every problem must have n_i >= k (no problem is skipped silently): a ValueError names the first one short.
    """
    ks = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not counts:
        raise ValueError("mean_pass_at_k needs at least one problem")
    if not ks:
        raise ValueError("mean_pass_at_k needs at least one k")
    out = {}
    for k in ks:
        short = next(((i, n) for i, (n, _) in enumerate(counts) if n < k), None)
        if short is not None:
            raise ValueError(f"pass@{k} needs >= {k} samples per problem, but problem {short[0]} has "
                             f"{short[1]}: raise the number of samples or drop k={k}")
        out[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
    return out
