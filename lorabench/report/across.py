"""One answer across tasks: per method, the mean difference to the baseline over every complete comparison
and the mean rank, each with an interval, at tuned rates and at the shared rate; and the claims about an
average over tasks (claims.yaml `scope: across`), decided on those averages.

The tasks are the fixed set that ran (not a sample of all tasks): the mean of the comparisons' differences
has the variance sum(se_c^2) / C^2 from each comparison's own seed-and-item noise, with Satterthwaite's
degrees of freedom. The mean rank's interval is a parametric bootstrap (each cell's score drawn from its
estimate, normal; a fixed seed, so the table is reproducible).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lorabench.report import claims as claims_mod
from lorabench.report import stats
from lorabench.report.grid import Comparison, paired

DRAWS = 4000


def combine(estimates: list[stats.Estimate]) -> stats.Estimate:
    """The mean of independent estimates (one per comparison)."""
    C = len(estimates)
    var = sum(e.se ** 2 for e in estimates)
    terms = [(e.se ** 2) ** 2 / e.df for e in estimates if e.se and math.isfinite(e.df) and e.df > 0]
    df = var ** 2 / sum(terms) if terms and var else math.inf
    return stats.Estimate(sum(e.mean for e in estimates) / C, math.sqrt(var) / C, df,
                          min(e.n_seeds for e in estimates), min(e.n_items for e in estimates))


@dataclass(frozen=True)
class MethodSummary:
    method: str
    vs_baseline: stats.Estimate | None    # mean over comparisons of (method - baseline), Holm over methods
    rank: float                           # mean rank over comparisons (1 = best)
    rank_lo: float
    rank_hi: float
    n: int                                # comparisons


def usable(cmps: list[Comparison], setting: str) -> tuple[list[Comparison], list[str]]:
    """The complete comparisons and the methods every one of them ran."""
    done = [c for c in cmps if c.complete and (setting == "tuned" or c.shared_lr is not None)]
    if not done:
        return [], []
    common = set.intersection(*(set(c.chosen(setting)) for c in done))
    return done, sorted(common)


def summary(cmps: list[Comparison], setting: str, baseline: str = "lora") -> list[MethodSummary]:
    done, methods = usable(cmps, setting)
    if not methods:
        return []
    diffs = {m: combine([paired(c.chosen(setting)[m], c.chosen(setting)[baseline]) for c in done])
             for m in methods if m != baseline and baseline in methods}
    diffs = stats.holm_family(diffs)
    rng = np.random.default_rng(0)
    ranks = np.zeros((DRAWS, len(methods)))
    observed = np.zeros(len(methods))
    for c in done:
        est = [c.chosen(setting)[m].estimate() for m in methods]
        mu, se = np.array([e.mean for e in est]), np.array([e.se for e in est])
        observed += _rank(mu[None, :])[0]
        ranks += _rank(mu[None, :] + rng.standard_normal((DRAWS, len(methods))) * se[None, :])
    ranks /= len(done)
    observed /= len(done)
    lo, hi = np.percentile(ranks, 2.5, axis=0), np.percentile(ranks, 97.5, axis=0)
    return [MethodSummary(m, diffs.get(m), float(observed[i]), float(lo[i]), float(hi[i]), len(done))
            for i, m in enumerate(methods)]


def _rank(scores: np.ndarray) -> np.ndarray:
    """Rank within each row, 1 = highest score, ties averaged."""
    from scipy.stats import rankdata
    return rankdata(-scores, axis=1)


def check(claim: dict, cmps: list[Comparison], setting: str) -> claims_mod.Verdict | None:
    """A claim about the average over tasks, decided on the comparisons' averaged paired differences."""
    if "across" not in claim.get("scope", []) or setting not in claim.get("settings", (setting,)):
        return None
    done, methods = usable(cmps, setting)
    m = claim["method"]
    if m not in methods or len(methods) < 2:
        return None
    rivals = [o for o in methods if o != m]
    if claim["kind"] == "best":
        diffs = {o: combine([paired(c.chosen(setting)[m], c.chosen(setting)[o]) for c in done]) for o in rivals}
        verdict, evidence = claims_mod.best_of(m, diffs)
    elif claim["kind"] == "matches":
        diffs = {o: combine([paired(c.chosen(setting)[o], c.chosen(setting)[m]) for c in done]) for o in rivals}
        verdict, evidence = claims_mod.matches_of(m, diffs, float(claim["margin"]))
    else:
        return None
    return claims_mod.Verdict(claim["id"], setting, verdict, f"over {len(done)} comparisons: {evidence}")
