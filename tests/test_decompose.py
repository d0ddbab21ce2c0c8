"""The shared decompositions (lorabench/adapters/decompose.py) against a float64 full SVD."""
import pytest
import torch

from lorabench.adapters.decompose import converged_top, exact_top, stacks


def decaying(m, n, seed, rate=0.97):   # a gradient-like spectrum: the top-8 subspace is well defined
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, n, generator=g) * rate ** torch.arange(float(n))


def best(m, r):
    U, S, Vh = torch.linalg.svd(m.double(), full_matrices=False)
    return U[:, :r] * S[:r] @ Vh[:r], S[:r]


def test_exact_top_is_the_top_of_the_full_svd():
    for m in (decaying(300, 120, 0), decaying(120, 300, 1)):
        U, S, V = exact_top(m, 8)
        expected, S_ref = best(m, 8)
        torch.testing.assert_close(S.double(), S_ref, rtol=1e-6, atol=0)
        assert ((U * S @ V.T).double() - expected).norm() / expected.norm() < 1e-6


def test_converged_top_equals_the_exact_top_for_a_stack():
    for shape in ((300, 120), (120, 300)):   # tall and wide
        mats = [decaying(*shape, seed) for seed in range(4)]
        tops = converged_top(mats, 8, seed=0)
        for m, (U, S, V) in zip(mats, tops):
            expected, S_ref = best(m, 8)
            torch.testing.assert_close(S.double(), S_ref, rtol=1e-6, atol=0)
            assert ((U * S @ V.T).double() - expected).norm() / expected.norm() < 1e-6
            torch.testing.assert_close(U.T @ U, torch.eye(8), atol=1e-5, rtol=0)   # orthonormal, both sides
            torch.testing.assert_close(V.T @ V, torch.eye(8), atol=1e-5, rtol=0)


def test_converged_top_converges_in_a_dozen_filtered_iterations(monkeypatch):
    # the Chebyshev filter's point: 10 iterations on this slowly decaying spectrum, where plain gram^2 takes 18
    from lorabench.adapters import decompose

    monkeypatch.setattr(decompose, "exact_top", lambda m, r: pytest.fail("fell back to exact_top"))
    mats = [decaying(300, 120, seed) for seed in range(4)]
    for m, (U, S, V) in zip(mats, converged_top(mats, 8, seed=0, max_iter=12)):
        expected, _ = best(m, 8)
        assert ((U * S @ V.T).double() - expected).norm() / expected.norm() < 1e-6


def test_converged_top_of_a_rank_deficient_stack_is_finite_and_exact():
    g = torch.Generator().manual_seed(0)
    mats = [torch.randn(300, 3, generator=g) @ torch.randn(3, 120, generator=g) for _ in range(2)]   # rank 3 < r
    for m, (U, S, V) in zip(mats, converged_top(mats, 8, seed=0)):
        assert U.isfinite().all() and V.isfinite().all()
        assert (U * S @ V.T - m).norm() / m.norm() < 1e-6


def test_converged_top_falls_back_to_exact_top_when_not_converged():
    mats = [torch.randn(200, 100, generator=torch.Generator().manual_seed(s)) for s in range(2)]  # flat spectrum
    for (U, S, V), m in zip(converged_top(mats, 8, seed=0, max_iter=2), mats):
        for got, want in zip((U, S, V), exact_top(m, 8)):
            assert torch.equal(got, want)


def test_stacks_group_by_key_in_chunks():
    keys = {"a": (10, 20, 8), "b": (20, 10, 8), "c": (10, 20, 8), "d": (10, 20, 8)}
    assert stacks(keys) == [["a", "c", "d"], ["b"]]
    assert stacks(keys, max_elements=400) == [["a", "c"], ["d"], ["b"]]


def test_every_decomposition_returns_the_documented_signs():
    """decompose's convention: each triplet's left vector has its largest-magnitude entry positive, whichever
    routine computed it, so 1 and 2 processes (whose reduced inputs differ in the last bits) get the same
    vectors elementwise. A negated input gives the same U and -V: the convention, not the solver, decides."""
    from lorabench.adapters.decompose import seeded_svd_lowrank

    def check(U, S, V, m, r):
        top = U.gather(0, U.abs().argmax(dim=0, keepdim=True))
        assert (top > 0).all(), top
        expected, _ = best(m, r)
        assert ((U[:, :r] * S[:r] @ V[:, :r].T).double() - expected).norm() / expected.norm() < 1e-3

    for m in (decaying(300, 120, 0), decaying(120, 300, 1)):
        routines = {"exact_top": lambda x: exact_top(x, 8),
                    "converged_top": lambda x: converged_top([x], 8, seed=0)[0],
                    "seeded_svd_lowrank": lambda x: seeded_svd_lowrank(x, q=32, niter=8, seed=0)}
        for name, routine in routines.items():
            U, S, V = routine(m)
            check(U, S, V, m, 8)
            Un, Sn, Vn = routine(-m)
            torch.testing.assert_close(Un[:, :8], U[:, :8], atol=1e-5, rtol=0, msg=lambda s: f"{name}: {s}")
            torch.testing.assert_close(Vn[:, :8], -V[:, :8], atol=1e-5, rtol=0, msg=lambda s: f"{name}: {s}")
