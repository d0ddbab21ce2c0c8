"""The matrix decompositions the SVD-based inits share: exact top-r singular triplets, seeded randomized SVD
(one layer, or a stack of equal-shape layers in one call), and where to run them.

Sign convention (`fix_signs`): a singular triplet (u, s, v) is only defined up to (-u, s, -v), and which sign a
solver returns is decided by the last bits of its input (LAPACK's reflections, a random sketch's QR). A
gradient all-reduced over 2 processes differs from one process's in those bits, so without a convention the
same run id gave flipped vectors on another layout, and inits that take A and B from different triplets
(LoRA-GA) then train differently. Every decomposition here therefore returns each triplet with the
largest-magnitude entry of its LEFT singular vector u positive (the first such entry on an exact tie; as
scikit-learn's svd_flip with u_based_decision=True). The inits that call these (PiSSA, LoRA-GA, LoRA-One,
CorDA) inherit it; those that decompose elsewhere apply `fix_signs` themselves (CorDA's kpm, lora_ga_peft).
What a convention cannot fix: two singular values equal to rounding leave their vectors free to rotate; the
layouts then still agree on the subspace only."""
from __future__ import annotations

import torch
from torch import nn


def svd_device(layer: nn.Module) -> torch.device:
    """Where to run a layer's decomposition: its adapter's device (the accelerator when there is one)."""
    return layer.lora_A["default"].weight.device


def fix_signs(U: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's sign convention: negate the pairs (U[:, j], V[:, j]) whose left vector's largest-magnitude
    entry is negative. U (.. x m x k) and V (.. x n x k) hold the vectors as columns; a stack works too."""
    idx = U.abs().argmax(dim=-2, keepdim=True)
    sign = torch.where(U.gather(-2, idx) < 0, -1.0, 1.0).to(U.dtype)
    return U * sign, V * sign


def seeded_svd_lowrank(m: torch.Tensor, q: int, niter: int, seed: int):
    """torch.svd_lowrank with its random projection drawn from a fixed seed, leaving the global RNG as it was,
    signs by `fix_signs`. `m` may be a stack (b x out x in) of equal-shape matrices: one call, one projection
    per matrix."""
    with torch.random.fork_rng(devices=[m.device] if m.is_cuda else []):
        torch.manual_seed(seed)
        U, S, V = torch.svd_lowrank(m, q=q, niter=niter)
    U, V = fix_signs(U, V)
    return U, S, V


def exact_top(m: torch.Tensor, r: int):
    """Top-r singular triplets (U, S, V) from the r largest eigenpairs of the smaller Gram matrix, in float64:
    on a CPU, LAPACK's syevr computes only those r eigenvectors (scipy's subset_by_index), several times less
    work than a full SVD (1536 x 576: 0.07 s vs 0.36 s, timed side by side). The other side's vectors are
    m V / S (or m^T U / S). Squaring the matrix squares its condition number, which float64 absorbs for the
    top of a spectrum. Signs by `fix_signs`."""
    a = m.double()
    tall = a.shape[0] >= a.shape[1]
    gram = a.T @ a if tall else a @ a.T
    k = gram.shape[0]
    if gram.is_cuda:
        w, v = torch.linalg.eigh(gram)
        w, v = w[k - r:], v[:, k - r:]
    else:
        from scipy.linalg import eigh

        w, v = (torch.from_numpy(x) for x in eigh(gram.numpy(), subset_by_index=[k - r, k - 1], driver="evr"))
    w, v = w.flip(0), v.flip(1)   # descending
    s = w.clamp(min=0).sqrt()
    other = (a @ v if tall else a.T @ v) / s.clamp(min=torch.finfo(torch.float64).tiny)
    U, V = fix_signs(*((other, v) if tall else (v, other)))
    return U.to(m.dtype), s.to(m.dtype), V.to(m.dtype)


def converged_top(mats: list[torch.Tensor], r: int, seed: int, tol: float = 1e-10, max_iter: int = 100):
    """[(U, S, V)]: the top-r singular triplets of each matrix of a list of equal shape, to float64 precision,
    all in one batched computation: subspace iteration on the Gram matrices (block size 2r, a seeded start, a
    Chebyshev filter of two products per orthonormalization), with Rayleigh-Ritz after each, until every Ritz
    pair's residual is under tol x the largest eigenvalue. On LoRA-One's gradients (SmolLM2, 210 layers) it
    converges in 6-7 iterations, products within 3e-9 of a float64 SVD's; a matrix that has not converged by
    max_iter gets `exact_top`."""
    a = torch.empty(len(mats), *mats[0].shape, dtype=torch.float64, device=mats[0].device)
    for j, m in enumerate(mats):   # one copy, straight into float64
        a[j].copy_(m)
    tall = a.shape[1] >= a.shape[2]
    gram = a.mT @ a if tall else a @ a.mT
    b, n, _ = gram.shape
    q = 2 * r
    if q >= n:
        return [exact_top(m, r) for m in mats]
    gen = torch.Generator(device=a.device).manual_seed(seed)
    X = torch.linalg.qr(torch.randn(n, q, generator=gen, dtype=a.dtype, device=a.device).expand(b, n, q)).Q
    GX = gram @ X
    c = torch.zeros(b, 1, 1, dtype=a.dtype, device=a.device)   # the first step is plain gram^2
    for _ in range(max_iter):
        # p(gram) X between orthonormalizations, p(x) = x^2 - c x + c^2/8: the degree-2 Chebyshev polynomial of
        # [0, c], c the block's smallest Ritz value, so the eigenvalues below c (the unwanted ones) are damped
        # most: 6-7 iterations where gram^2 takes 9-11, for the same two products each. Float64 keeps the
        # block's columns apart for the condition numbers met here (converged pairs are checked by their
        # residuals below, the rest fall back)
        X = torch.linalg.qr(gram @ (GX - c * X) + (c * c / 8) * X).Q
        GX = gram @ X                     # the Ritz check's product is the next step's first
        w, v = torch.linalg.eigh(X.mT @ GX)
        c = w[:, :1, None].clamp(min=0)
        w, v = w.flip(-1)[:, :r], v.flip(-1)[:, :, :r]   # the r largest, descending
        Y = X @ v
        ok = ((GX @ v - Y * w[:, None, :]).norm(dim=1) <= tol * w[:, :1]).all(dim=1)
        if bool(ok.all()):
            break
    out = []
    for j, m in enumerate(mats):
        if not ok[j]:
            out.append(exact_top(m, r))
            continue
        s = w[j].clamp(min=0).sqrt()
        other = (a[j] @ Y[j] if tall else a[j].T @ Y[j]) / s.clamp(min=torch.finfo(torch.float64).tiny)
        U, V = fix_signs(*((other, Y[j]) if tall else (Y[j], other)))
        out.append((U.to(m.dtype), s.to(m.dtype), V.to(m.dtype)))
    return out


def stacks(keys: dict[str, tuple], max_elements: int = 2 ** 27) -> list[list[str]]:
    """Names grouped by key, whose first two entries are the matrix shape, in first-seen order and in chunks
    of at most max_elements matrix entries (1 GiB in float64): the stacks one batched call can take."""
    groups: dict[tuple, list[str]] = {}
    for name, key in keys.items():
        groups.setdefault(key, []).append(name)
    out = []
    for key, names in groups.items():
        step = max(1, max_elements // (key[0] * key[1]))
        out += [names[k:k + step] for k in range(0, len(names), step)]
    return out
