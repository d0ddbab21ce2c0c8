"""Comparisons: the learning rate is chosen on validation only, the paired statistic is scipy's, the claims'
verdicts follow the intervals, a run counts once whatever schema wrote it, and the leaderboard is stable."""
import pytest
from scipy.stats import ttest_rel

from lorabench import codeid, results
from lorabench.report import claims, grid as comparison, leaderboard, stats

EXP = "compare/fixture"
INITS = ("lora", "pissa", "gora", "eva", "corda")


def rec(adapter, seed, lr, test, valid, losses=(1.0, 0.5), valid_loss=0.5, created="2026-01-01T00:00:00", items=None):
    config = {"model": {"name": "m"}, "task": {"name": "t", "family": "glue"}, "adapter": {"name": adapter, "init": adapter if adapter in INITS else "lora"},
              "trainer": {"lr": lr, "batch_size": 4}, "seed": seed, "experiment": EXP,
              "compare": {"baseline": "lora", "shared_lr": 1e-3}}
    return {"status": "success", "created_at": created, "config": config, "experiment": EXP, "model": "m", "task": "t",
            "code": codeid.code_id(config), "items": {"test": items, "valid": None},
            "adapter": adapter, "init": adapter, "protocol": "p", "mini": True, "seed": seed,
            "metrics": {"primary": "accuracy", "values": {"accuracy": test}, "n": 100},
            "metrics_valid": {"primary": "accuracy", "values": {"accuracy": valid}, "n": 50},
            "loss": {"valid": valid_loss, "test": 0.7}, "init_report": {},
            "costs": {"init_seconds": 1.0, "train_seconds": 2.0, "init_peak_mb": 1.0, "train_peak_mb": 1.0,
                      "num_processes": 1},
            "params": {"trainable": 10}, "curve": [{"step": i + 1, "loss": x} for i, x in enumerate(losses)]}


def only(records):
    [c] = comparison.comparisons(comparison.latest(records))
    return c


def test_learning_rate_is_chosen_on_validation_never_on_test():
    # at 1e-3 validation is best and test is worst; at 1e-2 the reverse
    recs = [rec("lora", s, 1e-3, test=0.10, valid=0.90) for s in range(3)]
    recs += [rec("lora", s, 1e-2, test=0.95, valid=0.60) for s in range(3)]
    c = only(recs)
    assert c.chosen("tuned")["lora"].lr == 1e-3
    for r in recs:   # whatever the test numbers, the choice stays
        r["metrics"]["values"]["accuracy"] = 1.0 - r["metrics"]["values"]["accuracy"]
    assert only(recs).chosen("tuned")["lora"].lr == 1e-3
    # a validation tie goes to the lower validation loss, then to the smaller rate
    tie = [rec("lora", 0, 1e-3, 0.5, 0.8, valid_loss=0.9), rec("lora", 0, 1e-2, 0.5, 0.8, valid_loss=0.4)]
    assert only(tie).chosen("tuned")["lora"].lr == 1e-2


def test_seed_only_difference_equals_scipy_paired_t():
    """Records without per-item results: the paired difference over seeds is scipy's paired t-test."""
    a, b = {0: 71.0, 1: 74.5, 2: 73.0, 3: 70.2}, {0: 70.0, 1: 72.0, 2: 73.5, 3: 68.0}
    e = stats.crossed([[a[s] - b[s]] for s in a])
    ref = ttest_rel(list(a.values()), list(b.values()))
    assert e.p == pytest.approx(ref.pvalue, rel=1e-12) and e.sources == "seeds only"
    from scipy.stats import t
    d = [a[s] - b[s] for s in a]
    sd = (sum((x - sum(d) / 4) ** 2 for x in d) / 3) ** 0.5
    assert e.hi - e.mean == pytest.approx(t.ppf(0.975, 3) * sd / 2)


def claim(kind, method, **kw):
    return {"id": f"{method}_{kind}", "says": "", "source": "", "kind": kind, "method": method, **kw}


def test_claim_verdicts():
    lora = [rec("lora", s, 1e-3, 0.70 + 0.01 * s, 0.7, losses=[1.0] * 10 + [0.5] * 10) for s in range(3)]
    good = [rec("pissa", s, 1e-3, 0.80 + 0.011 * s, 0.8, losses=[0.5] * 20) for s in range(3)]      # +10: holds
    bad = [rec("gora", s, 1e-3, 0.60 + 0.012 * s, 0.8, losses=[1.0] * 20) for s in range(3)]        # -10: fails
    noisy = [rec("eva", s, 1e-3, [0.60, 0.85, 0.70][s], 0.8, losses=[0.5] * 20) for s in range(3)]  # straddles 0
    c = only(lora + good + bad + noisy)
    v = {m: claims.check(claim("better", m), c, "shared").verdict for m in ("pissa", "gora", "eva")}
    assert v == {"pissa": claims.HOLDS, "gora": claims.FAILS, "eva": claims.UNSURE}
    # lora's trailing mean of 5 first reaches its final 0.5 at step 15 (logged every step: exactly), pissa at 1
    r = stats.ratio(comparison.step_pairs(c.chosen("shared")["pissa"], c.chosen("shared")["lora"],
                                          c.chosen("shared")["lora"]))
    assert r.mean == pytest.approx(15.0) and r.lo == pytest.approx(15.0) and r.censored == 0
    assert claims.check(claim("faster", "pissa", speedup=2.0), c, "shared").verdict == claims.HOLDS
    assert claims.check(claim("faster", "pissa", speedup=20.0), c, "shared").verdict == claims.FAILS
    # gora never reaches lora's loss: censored, an open lower end; it cannot be shown faster, and 0 < ratio
    g = stats.ratio(comparison.step_pairs(c.chosen("shared")["gora"], c.chosen("shared")["lora"],
                                          c.chosen("shared")["lora"]))
    assert g.censored == 3 and g.mean is None and g.lo == 0.0 and 0 < g.hi < 1
    assert claims.check(claim("faster", "gora", speedup=1.0), c, "shared").verdict == claims.FAILS
    assert claims.check(claim("best", "pissa"), c, "shared").verdict == claims.UNSURE    # eva's noise straddles
    best_gora = claims.check(claim("best", "gora"), c, "shared")
    assert best_gora.verdict == claims.FAILS and "decided by gora − pissa" in best_gora.evidence
    m = claims.check(claim("matches", "lora", margin=2.0, settings=["tuned"]), c, "tuned")
    assert m.verdict == claims.FAILS or m.verdict == claims.UNSURE   # pissa and eva are far above
    assert claims.check(claim("matches", "lora", margin=2.0, settings=["tuned"]), c, "shared") is None


def test_a_run_counts_once_across_schema_versions_and_reruns():
    """Decision: a run is (its config in the current schema, its seed). A key the schema gained since a record
    was written takes its default (`results.upgraded`), so the old record and a new run of the same
    experiment are one run; the leaderboard counts it once, as its newest record (reruns included)."""
    new = rec("lora", 0, 1e-3, 0.7, 0.7, created="2026-02-01T00:00:00")
    full = results.upgraded(new["config"])
    assert full["deterministic"] is True and full["eval_base"] is False   # filled from the schema
    old = rec("lora", 0, 1e-3, 0.6, 0.6, created="2026-01-01T00:00:00")
    old["config"] = {k: v for k, v in full.items() if k != "deterministic"}   # written before `deterministic`
    assert results.run_key(old) == results.run_key(new)
    changed = {**full, "deterministic": False}                              # a different value is another run
    assert results.config_hash(changed) != results.config_hash(full)
    rerun = {**new, "run_id": "x.r2", "created_at": "2026-03-01T00:00:00"}
    runs = comparison.latest([old, new, rerun])
    assert len(runs) == 1 and runs[0]["created_at"] == "2026-03-01T00:00:00"
    other_seed = rec("lora", 1, 1e-3, 0.6, 0.6)
    assert len(comparison.latest([old, new, other_seed])) == 2


def test_a_changed_experiment_shows_its_newest_setting_only():
    """An experiment whose task (or model, or trainer) changed keeps its old runs on disk, out of the cells."""
    old = [rec(m, s, 1e-3, 0.9, 0.9, created="2026-01-01T00:00:00") for m in ("lora", "pissa") for s in (0, 1)]
    for r in old:
        r["config"]["task"] = {"name": "t", "family": "glue", "options": {"instruction": True}}
        r["code"] = codeid.code_id(r["config"])
    new = [rec(m, s, 1e-3, 0.5, 0.5, created="2026-02-01T00:00:00") for m in ("lora", "dora") for s in (0, 1, 2)]
    c = only(old + new)
    assert c.superseded == 4 and set(c.methods) == {"lora", "dora"}
    assert c.methods["lora"][1e-3].test() == {0: 50.0, 1: 50.0, 2: 50.0}
    assert "4 earlier runs of this experiment" in leaderboard.comparison_section(c)
    assert only(new).superseded == 0


def older(code: dict) -> dict:
    """The code id of the same run written by other code (one part's digest differs)."""
    part = sorted(code["parts"])[0]
    return {**code, "parts": {**code["parts"], part: "0" * 16}}


def test_stale_runs_of_an_older_design_say_the_design_changed():
    """Runs of an earlier design that are also stale (older code) still tell the reader the design changed after
    results were seen; stale runs of the shown design are listed as stale."""
    old = [rec(m, s, 1e-3, 0.9, 0.9, created="2026-01-01T00:00:00") for m in ("lora", "pissa") for s in (0, 1)]
    for r in old:
        r["config"]["task"] = {"name": "t", "family": "glue", "eval_size": 100}
        r["code"] = older(codeid.code_id(r["config"]))   # and written by older code
    new = [rec(m, s, 1e-3, 0.5, 0.5, created="2026-02-01T00:00:00") for m in ("lora", "dora") for s in (0, 1, 2)]
    stale_new = rec("dora", 0, 1e-2, 0.5, 0.5)
    stale_new["code"] = older(stale_new["code"])
    c = only(old + new + [stale_new])
    assert c.superseded == 4 and len(c.stale) == 1 and c.stale[0][0] is stale_new
    text = leaderboard.comparison_section(c)
    assert "4 earlier runs of this experiment" in text and "1 stale records" in text


def test_an_old_schema_record_is_found_and_skipped(tmp_path, fast_cfg):
    from lorabench.config import to_container

    cfg = fast_cfg()
    config = to_container(cfg)
    old = {k: v for k, v in config.items() if k not in ("deterministic", "compare")}   # an older schema
    record = {"status": "success", "config": old, "config_hash": "0" * 64, "seed": cfg.seed,
              "code": codeid.code_id(config)}
    path = results.write(tmp_path / "results", record)
    assert path.name.startswith("000000000000")                  # its name came from the old hash
    assert results.existing(tmp_path / "results", config) == path


def test_leaderboard_is_deterministic_and_has_both_settings(tmp_path):
    for s in range(3):
        for lr, (t, v) in {1e-3: (0.7, 0.7), 1e-2: (0.75, 0.8)}.items():
            results.write(tmp_path, rec("lora", s, lr, t + 0.01 * s, v))
            results.write(tmp_path, rec("pissa", s, lr, t + 0.02 * s + 0.05, v))
    md1 = leaderboard.build(tmp_path).read_bytes()
    pngs = {p.name: p.read_bytes() for p in (tmp_path / "plots").glob("*.png")}
    md2 = leaderboard.build(tmp_path).read_bytes()
    assert md1 == md2 and pngs == {p.name: p.read_bytes() for p in (tmp_path / "plots").glob("*.png")}
    assert len(pngs) == 3
    text = md1.decode()
    assert "### Tuned" in text and "### Paper setting: every method at lr 0.001" in text
    # tuned: 1e-2 (validation 80 > 70), the grid's highest rate: an edge choice; 95 % interval over seeds
    # 82 ± t(0.975, 2) * 2 / sqrt(3); paired Δ +6 over seeds (no per-item results), Holm over one comparison
    assert "| pissa | 0.01 ⇥ | 82.00 | [77.03, 86.97] | +6.00 [+3.52, +8.48] ▲ | 0.009 |" in text
    assert "| lora | 0.001 | 71.00 | [68.52, 73.48] | — | — |" in text     # the shared-rate table


def test_an_experiment_whose_model_changed_is_one_comparison():
    """A renamed model (or another task) is a new setting of the same experiment, not a second comparison that
    would stay incomplete forever."""
    old = [rec(m, s, 1e-3, 0.9, 0.9, created="2026-01-01T00:00:00") for m in ("lora", "pissa") for s in (0, 1)]
    for r in old:
        r["model"], r["config"]["model"] = "m-old", {"name": "m-old"}
        r["code"] = codeid.code_id(r["config"])
    new = [rec(m, s, 1e-3, 0.5, 0.5, created="2026-02-01T00:00:00") for m in ("lora", "pissa") for s in (0, 1)]
    [c] = comparison.comparisons(comparison.latest(old + new))
    assert c.model == "m" and c.superseded == 4 and c.complete


def test_a_key_that_follows_the_rate_keeps_a_method_one_method():
    """LoRA-SB's init step is the training rate (adapter.options.step_lr = ${trainer.lr}): its runs at two
    rates are one method with two cells, not two methods with one rate each."""
    recs = [rec("lora_sb", s, lr, 0.6, 0.6) for s in range(2) for lr in (1e-3, 1e-2)]
    for r in recs:
        r["config"]["adapter"]["options"] = {"step_lr": r["config"]["trainer"]["lr"]}
    c = only(recs)
    assert list(c.methods) == ["lora_sb"] and sorted(c.methods["lora_sb"]) == [1e-3, 1e-2]
