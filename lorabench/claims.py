"""The papers' claims (claims.yaml), checked against every comparison that includes the claimed method.

Each check is paired over seeds: a 95 % t-interval of the per-seed difference (scores) or speedup
(convergence). A claim holds when the interval lies on the claimed side, does not hold when it lies on the
other side, and is inconclusive when it straddles the line: three seeds at mini scale often cannot tell.
Convergence is counted in optimizer steps to reach the baseline's final training loss (trailing mean of
`stats.SMOOTH` logged points, per seed); a run that never reaches it counts as total steps + 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from lorabench import stats
from lorabench.comparison import Cell, Comparison

HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
KINDS = ("better", "best", "faster", "fastest", "matches")


@dataclass(frozen=True)
class Verdict:
    claim: str
    setting: str         # 'shared' or 'tuned'
    verdict: str         # HOLDS / FAILS / UNSURE
    evidence: str        # the numbers behind it


def load(path: str | Path = CLAIMS_FILE) -> list[dict]:
    claims = yaml.safe_load(Path(path).read_text())
    for c in claims:
        if c.get("kind") not in KINDS:
            raise ValueError(f"claim {c.get('id')}: kind {c.get('kind')!r} is not one of {KINDS}")
    return claims


def speedups(method: Cell, baseline: Cell) -> dict[int, float]:
    """seed -> (baseline's steps to its own final loss) / (method's steps to that loss)."""
    return _ratios(method, baseline, baseline)


def _interval(s: stats.Summary, unit: str = "") -> str:
    return f"{s.mean:+.2f}{unit} [{s.lo:+.2f}, {s.hi:+.2f}]"


def _side(s: stats.Summary, line: float) -> str:
    if s.n < 2:
        return UNSURE
    return HOLDS if s.lo > line else FAILS if s.hi < line else UNSURE


def check(claim: dict, c: Comparison, setting: str) -> Verdict | None:
    """The claim's verdict in comparison `c` under `setting`; None if the comparison lacks what it needs."""
    chosen = c.chosen(setting)
    m, base = claim["method"], c.baseline
    if m not in chosen or base not in chosen:
        return None
    cell, kind = chosen[m], claim["kind"]
    others = {o: x for o, x in chosen.items() if o != m}
    if kind == "better":
        p = stats.paired(cell.test(), chosen[base].test())
        if p is None:
            return None
        return Verdict(claim["id"], setting, _side(p.diff, 0.0),
                       f"{m} − {base}: {_interval(p.diff)} pts over {p.n} seeds"
                       + (f", p = {p.p:.3f}" if p.p is not None else ""))
    if kind == "faster":
        k = float(claim.get("speedup", 1.0))
        ups = speedups(cell, chosen[base])
        if not ups:
            return None
        s = stats.summarize(list(ups.values()))
        verdict = UNSURE if s.n < 2 else HOLDS if s.lo >= k and s.mean > 1 else FAILS if s.hi < k else UNSURE
        return Verdict(claim["id"], setting, verdict,
                       f"speedup to {base}'s final loss {s.mean:.2f}x [{s.lo:.2f}, {s.hi:.2f}] over {s.n} seeds "
                       f"(claimed ≥ {k:g}x)")
    if kind in ("best", "fastest"):
        if kind == "best":
            diffs = {o: p.diff for o, x in others.items() if (p := stats.paired(cell.test(), x.test()))}
            line = 0.0
        else:   # ratio of the other's steps to this method's, to the baseline's final loss
            diffs = {o: stats.summarize(list(r.values())) for o, x in others.items()
                     if (r := _ratios(cell, x, chosen[base]))}
            line = 1.0
        if not diffs:
            return None
        sides = {o: _side(d, line) for o, d in diffs.items()}
        verdict = FAILS if FAILS in sides.values() else HOLDS if all(v == HOLDS for v in sides.values()) else UNSURE
        rival = min(diffs, key=lambda o: (diffs[o].mean, o))
        d = diffs[rival]
        gap = f"{m} − {rival}: {d.mean:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] pts" if kind == "best" else \
            f"{rival}'s steps / {m}'s: {d.mean:.2f}x [{d.lo:.2f}, {d.hi:.2f}]"
        return Verdict(claim["id"], setting, verdict,
                       f"strongest rival {gap}; {m} is significantly behind {sum(v == FAILS for v in sides.values())}"
                       f" and ahead of {sum(v == HOLDS for v in sides.values())} of {len(sides)} methods")
    # matches: no more than half of the other methods beat the baseline (here the claim's method)
    pairs = {o: p for o, x in others.items() if (p := stats.paired(x.test(), cell.test()))}
    if not pairs:
        return None
    sides = {o: _side(p.diff, 0.0) for o, p in pairs.items()}
    better = sorted(o for o, v in sides.items() if v == HOLDS)
    worse = sum(v == FAILS for v in sides.values())
    verdict = UNSURE if max(p.n for p in pairs.values()) < 2 else HOLDS if len(better) <= len(sides) / 2 else FAILS
    return Verdict(claim["id"], setting, verdict,
                   f"{len(better)} of {len(sides)} methods beat {m}" + (f" ({', '.join(better)})" if better else "")
                   + f", {worse} do worse, {len(sides) - len(better) - worse} not distinguishable")


def _ratios(method: Cell, other: Cell, baseline: Cell) -> dict[int, float]:
    """seed -> other's steps / method's steps to the baseline's final loss (> 1: method is faster); a curve
    that never reaches it counts its total steps + 1 (the baseline's own curve always does)."""
    out = {}
    b, m, o = baseline.curves(), method.curves(), other.curves()
    for seed in sorted(set(b) & set(m) & set(o)):
        target = stats.final_loss(b[seed])
        sm = stats.steps_to(m[seed], target) or m[seed][-1]["step"] + 1
        so = stats.steps_to(o[seed], target) or o[seed][-1]["step"] + 1
        out[seed] = so / sm
    return out


def verdicts(claims: list[dict], c: Comparison) -> list[tuple[dict, Verdict | None, Verdict | None]]:
    """(claim, shared-rate verdict, tuned verdict) for every claim this comparison can test."""
    out = []
    for claim in claims:
        shared = check(claim, c, "shared") if c.shared_lr is not None else None
        tuned = check(claim, c, "tuned")
        if shared or tuned:
            out.append((claim, shared, tuned))
    return out
