"""The leaderboard's statistics: hand-computed values on a synthetic comparison with known per-item outcomes,
the stated coverage and error rates on simulated data with known effects, censored convergence, staleness."""
import math

import numpy as np
import pytest
from scipy.stats import t as student

from lorabench import codeid, results
from lorabench.report import across, claims, grid, stats
from lorabench.scoring import item_weights, per_item


def test_crossed_interval_equals_the_hand_computed_anova():
    x = np.array([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0, 1.0]]) * 100
    S, I = x.shape
    g = x.mean()
    ms_seed = I * sum((x[s].mean() - g) ** 2 for s in range(S)) / (S - 1)
    ms_item = S * sum((x[:, i].mean() - g) ** 2 for i in range(I)) / (I - 1)
    ms_err = sum((x[s, i] - x[s].mean() - x[:, i].mean() + g) ** 2 for s in range(S) for i in range(I)) / 8
    # here the items' mean square is below the residual one: no item component, the seeds' mean square alone
    assert ms_item < ms_err
    e = stats.crossed(x)
    assert e.mean == pytest.approx(g) and e.se == pytest.approx(math.sqrt(ms_seed / (S * I))) and e.df == S - 1
    assert e.hi == pytest.approx(g + student.ppf(0.975, S - 1) * e.se)
    # items that differ (column offsets): ms_seed + ms_item - ms_err, with Satterthwaite's degrees of freedom
    y = x + np.array([0.0, 50.0, -50.0, 100.0, 0.0])[None, :]
    ms_item = S * sum((y[:, i].mean() - y.mean()) ** 2 for i in range(I)) / (I - 1)
    assert ms_item > ms_err
    f = stats.crossed(y)
    v = ms_seed + ms_item - ms_err
    assert f.se == pytest.approx(math.sqrt(v / (S * I)))
    assert f.df == pytest.approx(v ** 2 / (ms_seed ** 2 / 2 + ms_item ** 2 / 4 + ms_err ** 2 / 8))


def test_holm_equals_the_hand_computed_step_down():
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert adj == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06), "d": None}


def _simulate(rng, S, I, delta, sig_seed, sig_item=1.5, sig_mi=0.5):
    b, c = rng.normal(0, sig_item, I), rng.normal(0, sig_mi, I)
    am, ab = rng.normal(0, sig_seed, S), rng.normal(0, sig_seed, S)
    pm = 1 / (1 + np.exp(-(b[None, :] + delta + c[None, :] + am[:, None])))
    pb = 1 / (1 + np.exp(-(b[None, :] + ab[:, None])))
    return 100 * ((rng.random((S, I)) < pm).astype(float) - (rng.random((S, I)) < pb))


def _truth(rng, delta, sig_seed, sig_item=1.5, sig_mi=0.5, n=400_000):
    b, c = rng.normal(0, sig_item, n), rng.normal(0, sig_mi, n)
    am, ab = rng.normal(0, sig_seed, n), rng.normal(0, sig_seed, n)
    return 100 * np.mean(1 / (1 + np.exp(-(b + delta + c + am))) - 1 / (1 + np.exp(-(b + ab))))


@pytest.mark.parametrize("S,I,delta,sig_seed", [(3, 100, 0.3, 0.3), (3, 200, 0.0, 0.5)])
def test_intervals_cover_seed_and_item_noise(S, I, delta, sig_seed):
    """Binary items with item difficulty, a method x item effect and a per-run (seed) effect: the 95 %
    interval covers the population difference (new seeds, new items) about 95 % of the time; item-only or
    seed-only intervals would not."""
    rng = np.random.default_rng(1)
    mu = _truth(rng, delta, sig_seed)
    hits, n = 0, 600
    for _ in range(n):
        lo, hi = stats.crossed(_simulate(rng, S, I, delta, sig_seed)).interval()
        hits += lo <= mu <= hi
    assert 0.92 <= hits / n <= 0.985


def test_holm_controls_the_familywise_error_of_a_table():
    """Ten methods equal to the baseline: the chance that any is called better or worse stays near 5 %
    under Holm (uncorrected it is about 1 - 0.95^10 = 40 %)."""
    rng = np.random.default_rng(2)
    any_corrected = any_raw = 0
    n = 300
    for _ in range(n):
        fam = {f"m{k}": stats.crossed(_simulate(rng, 3, 100, 0.0, 0.3)) for k in range(10)}
        any_raw += any(e.p < 0.05 for e in fam.values())
        any_corrected += any(e.verdict != "tie" for e in stats.holm_family(fam).values())
    assert any_corrected / n <= 0.08 and any_raw / n >= 0.2


def _items(scores):
    return {"digest": "d" * 16, "n": len(scores), "scores": "".join(str(int(x)) for x in scores)}


def _rec(adapter, seed, lr, scores, curve):
    from tests.test_comparison import rec
    r = rec(adapter, seed, lr, sum(scores) / len(scores), 0.5, losses=curve, items=_items(scores))
    return r


def test_synthetic_comparison_intervals_holm_and_verdicts_equal_hand_values():
    rng = np.random.default_rng(3)
    base = rng.random((3, 40)) < 0.5
    better = base | (rng.random((3, 40)) < 0.5)        # strictly more items right
    same = base.copy()
    same[:, :2] = ~same[:, :2]                          # two flipped items per seed
    recs = []
    for s in range(3):
        recs.append(_rec("lora", s, 1e-3, base[s], [1.0] * 10 + [0.5] * 10))
        recs.append(_rec("pissa", s, 1e-3, better[s], [0.5] * 20))
        recs.append(_rec("gora", s, 1e-3, same[s], [1.0] * 20))
    [c] = grid.comparisons(grid.latest(recs))
    rows = {r.method: r for r in grid.rows(c, "shared")}
    d_p = 100 * (better.astype(float) - base)
    d_g = 100 * (same.astype(float) - base)
    e_p, e_g = stats.crossed(d_p), stats.crossed(d_g)
    assert rows["pissa"].vs_baseline.mean == pytest.approx(d_p.mean())
    assert (rows["pissa"].vs_baseline.lo, rows["pissa"].vs_baseline.hi) == pytest.approx(e_p.interval())
    adj = stats.holm({"pissa": e_p.p, "gora": e_g.p})
    assert rows["pissa"].vs_baseline.p_adj == pytest.approx(adj["pissa"])
    assert rows["gora"].vs_baseline.p_adj == pytest.approx(adj["gora"])
    assert rows["pissa"].vs_baseline.sources == "seeds and items"
    ok = {"id": "x", "says": "", "source": "", "kind": "better", "method": "pissa"}
    assert claims.check(ok, c, "shared").verdict == (claims.HOLDS if adj["pissa"] < 0.05 else claims.UNSURE)
    assert claims.check({**ok, "method": "gora"}, c, "shared").verdict == claims.UNSURE


def test_per_item_results_reproduce_the_metric_and_weight_groups():
    samples = [{"dataset": d, "correct": c} for d, c in [("a", 1), ("a", 0), ("a", 1), ("b", 0)]]
    metrics = {"primary": "average", "values": {"average": (2 / 3 + 0) / 2}, "samples": samples}
    it = per_item(metrics, [{"q": i} for i in range(4)])
    assert it["scores"] == "1010" and it["groups"] == ["a", "b"] and it["group_of"] == [0, 0, 0, 1]
    assert item_weights(it["group_of"], 4) == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    metrics["values"]["average"] = 0.5   # not what the items give: no per-item results rather than wrong ones
    assert per_item(metrics, [{"q": i} for i in range(4)]) is None
    assert per_item({"primary": "mcc", "values": {"mcc": 0.1}, "samples": [{"gold": 1, "pred": 1}]}, [{}]) is None


def test_convergence_ratio_is_censored_and_never_leaves_zero_to_infinity():
    curve = [{"step": 2 * i + 2, "loss": x} for i, x in enumerate([1.0, 0.8, 0.6, 0.4])]
    lo, hi = stats.steps_interval(curve, 0.8, window=1)   # logged every 2 steps: reached at step 4, after step 2
    assert (lo, hi) == (3, 4)
    never = stats.steps_interval(curve, 0.1, window=1)
    assert never == (9, math.inf)
    r = stats.ratio([(never, (3, 4)), (never, (3, 4)), ((3, 4), (3, 4))])
    assert r.censored == 2 and r.mean is None and r.lo == 0.0 and r.hi < math.inf and r.p_above(1.0) == 1.0


def test_across_tasks_mean_difference_combines_comparisons():
    a = stats.Estimate(2.0, 1.0, 10, 3, 100)
    b = stats.Estimate(4.0, 2.0, 20, 3, 100)
    e = across.combine([a, b])
    assert e.mean == 3.0 and e.se == pytest.approx(math.sqrt(5) / 2)
    assert e.df == pytest.approx(25 / (1 / 10 + 16 / 20))


def test_editing_one_init_module_makes_exactly_its_runs_stale(tmp_path, monkeypatch):
    """An edit to corda.py: CorDA's records are stale (not done, left out of comparisons), LoRA's are not."""
    def config(init):
        return {"model": {"name": "m"}, "task": {"name": "t", "family": "glue"},
                "adapter": {"name": init, "init": init}, "seed": 0}
    for init in ("lora", "corda"):
        results.write(tmp_path, {"status": "success", "config": config(init), "code": codeid.code_id(config(init))})
    real = codeid.file_digest
    monkeypatch.setattr(codeid, "file_digest",
                        lambda p: real(p) + ("edited" if p.name == "corda.py" else ""))
    assert results.existing(tmp_path, config("lora")) is not None
    assert results.existing(tmp_path, config("corda")) is None
    rec = results.load_all(tmp_path)
    assert {r["adapter"]["name"] if isinstance(r.get("adapter"), dict) else r["config"]["adapter"]["name"]:
            codeid.stale_parts(r) for r in rec} == {"lora": [], "corda": ["init"]}


def test_an_edge_choice_asks_for_the_next_rate_until_the_optimum_is_interior():
    from lorabench.report import extend
    from tests.test_comparison import rec

    recs = [rec("pissa", s, lr, 0.5, v) for s in range(3) for lr, v in ((1e-3, 0.6), (1e-2, 0.8))]   # best: top
    recs += [rec("lora", s, lr, 0.5, v) for s in range(3) for lr, v in ((1e-3, 0.8), (1e-2, 0.6))]   # best: bottom
    [c] = grid.comparisons(grid.latest(recs))
    c.design = {"methods": ["lora", "pissa"], "lrs": [1e-3, 1e-2], "seeds": [0, 1, 2]}
    assert c.edge("pissa") == "high" and c.edge("lora") == "low"
    assert extend.needed(c) == [("lora", 3e-4), ("pissa", 3e-2)]
    recs += [rec("pissa", s, 3e-2, 0.5, 0.7) for s in range(3)]      # beyond the edge: worse, so 1e-2 is interior
    recs += [rec("lora", s, 3e-4, 0.5, 0.9) for s in range(2)]       # one seed still missing: wait for it
    [c] = grid.comparisons(grid.latest(recs))
    c.design = {"methods": ["lora", "pissa"], "lrs": [1e-3, 1e-2], "seeds": [0, 1, 2]}
    c.missing = grid.missing(c)
    assert c.edge("pissa") is None and ("lora", 3e-4, 2) in c.missing and extend.needed(c) == []
    assert not c.complete
