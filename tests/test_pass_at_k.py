from math import comb

import pytest

from lorabench.eval.pass_at_k import mean_pass_at_k, pass_at_k


def closed_form(n, c, k):
    return 1.0 - comb(n - c, k) / comb(n, k)


def test_equals_the_closed_form_over_a_grid():
    for n in (1, 2, 5, 10, 20, 200):
        for c in range(n + 1):
            for k in sorted({1, 2, 5, 10, 100, n} & set(range(1, n + 1))):
                assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), abs=1e-12), (n, c, k)


def test_edge_cases():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 7, 4) == 1.0                      # n - c < k: every draw of 4 contains a pass
    for n, c in ((1, 1), (7, 3), (200, 37)):
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-15)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)        # 1 - C(3,2)/C(4,2) = 1 - 3/6
    # stays finite where the binomials overflow a float
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)


@pytest.mark.parametrize("n,c,k", [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_bad_input(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(TypeError):
        pass_at_k(5.0, 2, 1)


def test_mean_over_problems():
    counts = [(10, 0), (10, 3), (10, 10), (5, 1)]
    out = mean_pass_at_k(counts, [1, 5])
    assert set(out) == {"pass@1", "pass@5"}
    assert out["pass@1"] == pytest.approx((0 + 0.3 + 1 + 0.2) / 4)
    assert out["pass@5"] == pytest.approx(sum(closed_form(n, c, 5) for n, c in counts) / 4)
    assert mean_pass_at_k([(1, 1), (1, 0)], 1) == {"pass@1": 0.5}   # a single k as an int


def test_mean_refuses_k_above_a_problems_samples():
    with pytest.raises(ValueError, match=r"pass@10 .*problem 1 has 5"):
        mean_pass_at_k([(10, 2), (5, 1)], [1, 10])
    with pytest.raises(ValueError):
        mean_pass_at_k([], [1])
