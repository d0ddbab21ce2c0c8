"""The papers' claims (claims.yaml), checked in every complete comparison that includes the claimed method,
and across comparisons (report/across.py) where the claim is about an average over tasks.

The statistics are report/stats.py's (its docstring is the procedure): differences paired by seed and item,
Holm's correction over each decision's family, equivalence by a one-sided test against a stated margin,
convergence as a log-scale ratio with censored runs left open. A claim holds when the corrected test shows the
claimed side, does not hold when it shows the other side, and is inconclusive otherwise. Each verdict names
the comparison that decided it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from lorabench.report import stats
from lorabench.report.grid import Comparison, paired, rows, step_pairs

HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
KINDS = ("better", "best", "faster", "fastest", "matches")


@dataclass(frozen=True)
class Verdict:
    claim: str
    setting: str         # 'shared', 'tuned' or 'across tasks'
    verdict: str         # HOLDS / FAILS / UNSURE
    evidence: str        # the numbers behind it, naming the deciding comparison


def load(path: str | Path = CLAIMS_FILE) -> list[dict]:
    claims = yaml.safe_load(Path(path).read_text())
    for c in claims:
        if c.get("kind") not in KINDS:
            raise ValueError(f"claim {c.get('id')}: kind {c.get('kind')!r} is not one of {KINDS}")
        if c["kind"] == "matches" and "margin" not in c:
            raise ValueError(f"claim {c['id']}: a 'matches' claim needs its equivalence margin (points)")
    return claims


def _pts(e: stats.Estimate) -> str:
    p = f", Holm p = {e.p_adj:.3g}" if e.p_adj is not None else (f", p = {e.p:.3g}" if e.p is not None else "")
    return f"{e.mean:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}] pts ({e.sources}{p})"


def side(e: stats.Estimate) -> str:
    """HOLDS / FAILS / UNSURE for 'mean > 0' on the Holm-adjusted p."""
    return {"better": HOLDS, "worse": FAILS}.get(e.verdict, UNSURE)


def best_of(m: str, diffs: dict[str, stats.Estimate]) -> tuple[str, str]:
    """(verdict, evidence) of 'm beats every rival' from m - rival estimates, Holm over the rivals."""
    diffs = stats.holm_family(diffs)
    sides = {o: side(d) for o, d in diffs.items()}
    if FAILS in sides.values():
        verdict, pool = FAILS, [o for o, v in sides.items() if v == FAILS]
        decider = min(pool, key=lambda o: (diffs[o].p_adj, o))
    else:
        verdict = HOLDS if all(v == HOLDS for v in sides.values()) else UNSURE
        pool = [o for o, v in sides.items() if v != HOLDS] or list(diffs)
        decider = max(pool, key=lambda o: (diffs[o].p_adj if diffs[o].p_adj is not None else 1.0, o))
    ahead = sum(v == HOLDS for v in sides.values())
    return verdict, (f"decided by {m} − {decider}: {_pts(diffs[decider])}; {m} is significantly ahead of {ahead} "
                     f"and behind {sum(v == FAILS for v in sides.values())} of {len(sides)} methods")


def matches_of(m: str, diffs: dict[str, stats.Estimate], margin: float) -> tuple[str, str]:
    """(verdict, evidence) of 'm matches or beats most rivals': rival - m estimates; m matches a rival when
    the rival's advantage is shown below `margin` (one-sided, Holm over rivals); the claim fails when more
    than half the rivals are significantly better (two-sided, Holm)."""
    ps = stats.holm({o: d.p_below(margin) for o, d in diffs.items()})
    better = stats.holm_family(diffs)
    shown = sorted(o for o, p in ps.items() if p is not None and p < stats.ALPHA)
    beat = sorted(o for o, d in better.items() if d.verdict == "better")
    n = len(diffs)
    verdict = HOLDS if len(shown) > n / 2 else FAILS if len(beat) > n / 2 else UNSURE
    undecided = sorted(set(diffs) - set(shown) - set(beat))
    decider = (max(shown, key=lambda o: (ps[o], o)) if verdict == HOLDS else
               min(beat, key=lambda o: (better[o].p_adj, o)) if verdict == FAILS else
               min(undecided or list(diffs), key=lambda o: (ps[o] if ps[o] is not None else 1.0, o)))
    return verdict, (f"{m} within {margin:g} pts of {len(shown)} of {n} methods (equivalence margin, Holm), "
                     f"{len(beat)} significantly better" + (f" ({', '.join(beat)})" if beat else "")
                     + f"; decided by {decider} − {m}: {_pts(diffs[decider])}, margin test Holm p = "
                     + (f"{ps[decider]:.3g}" if ps[decider] is not None else "—"))


def check(claim: dict, c: Comparison, setting: str) -> Verdict | None:
    """The claim's verdict in comparison `c` under `setting`; None if the comparison cannot test it (an
    incomplete grid, a missing method, a claim about another setting or about an average over tasks)."""
    if not c.complete or "comparison" not in claim.get("scope", ["comparison"]) or \
            setting not in claim.get("settings", (setting,)):
        return None
    chosen = c.chosen(setting)
    m, base, kind = claim["method"], c.baseline, claim["kind"]
    if m not in chosen or base not in chosen:
        return None
    others = {o: x for o, x in chosen.items() if o != m}
    if kind == "better":
        row = next(r for r in rows(c, setting) if r.method == m)
        if row.vs_baseline is None:
            return None
        return Verdict(claim["id"], setting, side(row.vs_baseline),
                       f"{m} − {base}: {_pts(row.vs_baseline)}, Holm over the table's {len(chosen) - 1} comparisons")
    if kind == "faster":
        k = float(claim.get("speedup", 1.0))
        ratios = {o: stats.ratio(p) for o, x in chosen.items() if o != base and (p := step_pairs(x, chosen[base],
                                                                                                 chosen[base]))}
        if m not in ratios:
            return None
        up = stats.holm({o: r.p_above(k) for o, r in ratios.items()})[m]
        down = stats.holm({o: r.p_below(k) for o, r in ratios.items()})[m]
        verdict = HOLDS if up < stats.ALPHA else FAILS if down < stats.ALPHA else UNSURE
        return Verdict(claim["id"], setting, verdict,
                       f"speed-up to {base}'s final loss {ratios[m].text()} (claimed ≥ {k:g}x; Holm p = "
                       f"{up:.3g} for, {down:.3g} against, over the table's {len(ratios)} methods)")
    if kind == "best":
        diffs = {o: e for o, x in others.items() if (e := paired(chosen[m], x)) is not None}
        if not diffs:
            return None
        return Verdict(claim["id"], setting, *best_of(m, diffs))
    if kind == "fastest":
        ratios = {o: stats.ratio(p) for o, x in others.items() if (p := step_pairs(chosen[m], x, chosen[base]))}
        if not ratios:
            return None
        up, down = stats.holm({o: r.p_above(1.0) for o, r in ratios.items()}), \
            stats.holm({o: r.p_below(1.0) for o, r in ratios.items()})
        verdict = FAILS if any(p < stats.ALPHA for p in down.values()) else \
            HOLDS if all(p < stats.ALPHA for p in up.values()) else UNSURE
        decider = min(down, key=lambda o: (down[o], o)) if verdict == FAILS else max(up, key=lambda o: (up[o], o))
        return Verdict(claim["id"], setting, verdict,
                       f"decided by {decider}'s steps / {m}'s: {ratios[decider].text()} (Holm p = "
                       f"{up[decider]:.3g} faster, {down[decider]:.3g} slower, over {len(ratios)} methods)")
    diffs = {o: e for o, x in others.items() if (e := paired(x, chosen[m])) is not None}   # matches
    if not diffs:
        return None
    return Verdict(claim["id"], setting, *matches_of(m, diffs, float(claim["margin"])))


def verdicts(claims: list[dict], c: Comparison) -> list[tuple[dict, Verdict | None, Verdict | None]]:
    """(claim, shared-rate verdict, tuned verdict) for every claim this comparison can test."""
    out = []
    for claim in claims:
        shared = check(claim, c, "shared") if c.shared_lr is not None else None
        tuned = check(claim, c, "tuned")
        if shared or tuned:
            out.append((claim, shared, tuned))
    return out
