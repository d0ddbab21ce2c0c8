"""The statistics every table and claim uses. The procedure (LEADERBOARD.md states it in these words):

1. A difference between two methods is paired by seed and by test item. Its standard error counts both
   sources of noise, seeds and items, from the crossed random-effects model d[s,i] = mu + a_s + b_i + e_si
   (the ANOVA estimate of Var(mean) = s2_seed/S + s2_item/I + s2_err/(S*I): MS_seed + max(MS_item - MS_err,
   0), over S*I),
   with Satterthwaite's degrees of freedom; the interval is mean +- t * se. Records without per-item results
   fall back to the seeds alone (a t-interval over seeds), and say so.
2. Family-wise error: Holm's step-down correction over each table's comparisons to the baseline; a cell is
   better/worse only when its Holm-adjusted p is below ALPHA.
3. Equivalence ("matches"): a one-sided test that the rival's advantage is below a stated margin (the
   non-inferiority half of TOST), Holm-corrected over the rivals; it can say inconclusive.
4. Convergence: the ratio of steps to reach the baseline's final training loss, on the log scale. Each seed
   gives an interval for its log-ratio (the logging grid's resolution; a run that never reaches the target
   is right-censored, an open end, never a made-up step count); the interval of the mean takes the lower
   ends' lower t-bound and the upper ends' upper t-bound, so it is never outside (0, inf) and an open end
   stays open.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
SMOOTH = 5   # training-loss points averaged (trailing) before a curve is compared with a target


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float          # sample standard deviation (0 for one value)
    lo: float           # 95 % t-interval of the mean (mean itself for one value)
    hi: float


def summarize(values: list[float]) -> Summary:
    from scipy.stats import t

    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = t.ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Estimate:
    """A mean (a score, or a paired difference) with the standard error of the procedure above."""
    mean: float
    se: float
    df: float
    n_seeds: int
    n_items: int            # 0: no per-item results, the interval covers seeds only
    p_adj: float | None = None   # Holm-adjusted two-sided p, set by `holm_family`

    @property
    def sources(self) -> str:
        return "seeds and items" if self.n_items and self.n_seeds > 1 else "items only" if self.n_items else \
            "seeds only"

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        if not self.se:
            return (self.mean, self.mean)
        half = _tq(level, self.df) * self.se
        return (self.mean - half, self.mean + half)

    @property
    def lo(self) -> float:
        return self.interval()[0]

    @property
    def hi(self) -> float:
        return self.interval()[1]

    @property
    def p(self) -> float | None:
        """Two-sided p of mean = 0; None where the data hold no estimate of the noise (one seed, no items)."""
        if self.se > 0:
            from scipy.stats import t
            return float(2 * t.sf(abs(self.mean) / self.se, self.df))
        if self.n_seeds < 2 and not self.n_items:
            return None
        return 1.0 if self.mean == 0 else 0.0   # no noise at all among several observations

    def p_below(self, margin: float) -> float | None:
        """One-sided p of H0: mean >= margin (rejecting it shows mean < margin)."""
        if not self.se:
            return None
        from scipy.stats import t
        return float(t.cdf((self.mean - margin) / self.se, self.df))

    @property
    def verdict(self) -> str:
        """'better' / 'worse' when the (Holm-adjusted, where set) p is below ALPHA, else 'tie'."""
        p = self.p_adj if self.p_adj is not None else self.p
        if p is None or p >= ALPHA:
            return "tie"
        return "better" if self.mean > 0 else "worse"


def _tq(level: float, df: float) -> float:
    from scipy.stats import norm, t
    q = 0.5 + level / 2
    return float(norm.ppf(q)) if math.isinf(df) else float(t.ppf(q, df))


def crossed(x) -> Estimate:
    """x[seed][item] (a difference or a score, in points; each row's mean is that seed's number): the mean
    and its standard error over seeds and items (module docstring, 1). One column: seeds only; one row: items
    only."""
    x = np.asarray(x, dtype=np.float64)
    S, I = x.shape
    grand = float(x.mean())
    if I == 1 or S == 1:
        v = x[:, 0] if I == 1 else x[0]
        n = len(v)
        se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        return Estimate(grand, se, float(n - 1) if n > 1 else math.nan, S, I if I > 1 else 0)
    rm, cm = x.mean(1), x.mean(0)
    ms_seed = I * float(((rm - grand) ** 2).sum()) / (S - 1)
    ms_item = S * float(((cm - grand) ** 2).sum()) / (I - 1)
    resid = x - rm[:, None] - cm[None, :] + grand
    df_err = (S - 1) * (I - 1)
    ms_err = float((resid ** 2).sum()) / df_err
    # Var(mean) * S * I as a combination of mean squares. The seed term is never dropped: with 3 seeds its
    # estimate is poor, and switching to the items' many degrees of freedom whenever it came out small would
    # make the test anti-conservative (measured: 7 % false positives at a nominal 5 %). The item component
    # is added where it is positive.
    terms = [(1.0, ms_seed, S - 1)]
    if ms_item > ms_err:
        terms += [(1.0, ms_item, I - 1), (-1.0, ms_err, df_err)]
    total = sum(c * m for c, m, _ in terms)
    if total <= 0:
        return Estimate(grand, 0.0, math.inf, S, I)
    denom = sum((c * m) ** 2 / d for c, m, d in terms)
    df = total ** 2 / denom if denom > 0 else math.inf
    return Estimate(grand, math.sqrt(total / (S * I)), df, S, I)


def weighted(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Item scores [seeds, items] scaled so that each row's plain mean is the weighted metric."""
    return scores * (weights * len(weights))[None, :]


def holm(ps: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjusted p-values (None stays None and does not count in the family)."""
    known = sorted((p, k) for k, p in ps.items() if p is not None)
    m, out, running = len(known), {k: None for k in ps}, 0.0
    for j, (p, k) in enumerate(known):
        running = max(running, min(1.0, (m - j) * p))
        out[k] = running
    return out


def holm_family(estimates: dict[str, Estimate]) -> dict[str, Estimate]:
    """The same estimates with their Holm-adjusted p over the family."""
    from dataclasses import replace
    adj = holm({k: e.p for k, e in estimates.items()})
    return {k: replace(e, p_adj=adj[k]) for k, e in estimates.items()}


# ---- convergence ------------------------------------------------------------------------------------------

def smoothed(losses: list[float], window: int = SMOOTH) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(losses):
        acc += x - (losses[i - window] if i >= window else 0.0)
        out.append(acc / min(i + 1, window))
    return out


def final_loss(curve: list[dict], window: int = SMOOTH) -> float:
    losses = [p["loss"] for p in curve]
    return statistics.fmean(losses[-window:])


def steps_to(curve: list[dict], target: float, window: int = SMOOTH) -> int | None:
    """The first logged optimizer step at which the trailing-mean training loss is at or below `target`;
    None if it never is."""
    lo, hi = steps_interval(curve, target, window)
    return None if math.isinf(hi) else int(hi)


def steps_interval(curve: list[dict], target: float, window: int = SMOOTH) -> tuple[float, float]:
    """The steps at which the curve reaches `target`, as the interval the logging grid allows: (previous
    logged step + 1, first logged step at or below it); (last step + 1, inf) when it never does."""
    prev = 0
    for point, value in zip(curve, smoothed([p["loss"] for p in curve], window)):
        if value <= target + 1e-9 * abs(target):   # a curve's own final loss counts as reached
            return (prev + 1, point["step"])
        prev = point["step"]
    return (prev + 1, math.inf)


@dataclass(frozen=True)
class Ratio:
    """other's steps / method's steps to a target, over seeds, on the log scale (> 1: method is faster)."""
    n: int
    lo_ends: tuple[float, ...]    # per seed, the log-ratio's lower end (-inf: open)
    hi_ends: tuple[float, ...]    # per seed, the upper end (+inf: open)
    censored: int                 # seeds with an open end

    def _t(self, ends, side):
        if any(math.isinf(e) for e in ends) or self.n < 2:
            return -math.inf if side < 0 else math.inf
        s = summarize(list(ends))
        return s.lo if side < 0 else s.hi

    @property
    def lo(self) -> float:
        return math.exp(self._t(self.lo_ends, -1))

    @property
    def hi(self) -> float:
        return math.exp(self._t(self.hi_ends, +1))

    @property
    def mean(self) -> float | None:
        """Geometric mean of the seeds' interval midpoints; None when an end is open."""
        if self.censored:
            return None
        return math.exp(statistics.fmean((a + b) / 2 for a, b in zip(self.lo_ends, self.hi_ends)))

    def p_above(self, k: float) -> float:
        """One-sided p of H0: ratio <= k, from the lower ends (1 when one is open or n < 2)."""
        return _one_sided(self.lo_ends, math.log(k), +1)

    def p_below(self, k: float) -> float:
        """One-sided p of H0: ratio >= k, from the upper ends."""
        return _one_sided(self.hi_ends, math.log(k), -1)

    def text(self) -> str:
        lo, hi = self.lo, self.hi
        mid = "—" if self.mean is None else f"{self.mean:.2f}x"
        cens = f", {self.censored} of {self.n} seeds never reach it" if self.censored else ""
        return f"{mid} [{_x(lo)}, {_x(hi)}]{cens}"


def _x(v: float) -> str:
    return "0" if v == 0 else "∞" if math.isinf(v) else f"{v:.2f}x"


def _one_sided(ends, line: float, side: int) -> float:
    from scipy.stats import t
    if len(ends) < 2 or any(math.isinf(e) for e in ends):
        return 1.0
    s = summarize(list(ends))
    if s.std == 0:
        return 0.0 if side * (s.mean - line) > 0 else 1.0
    tt = side * (s.mean - line) / (s.std / math.sqrt(s.n))
    return float(t.sf(tt, s.n - 1))


def log_ratio(method: tuple[float, float], other: tuple[float, float]) -> tuple[float, float]:
    """The interval of log(other's steps / method's steps) from the two step intervals."""
    (ml, mh), (ol, oh) = method, other
    lo = -math.inf if math.isinf(mh) else math.log(ol / mh)
    hi = math.inf if math.isinf(oh) else math.log(oh / ml)
    return lo, hi


def ratio(pairs: list[tuple[tuple[float, float], tuple[float, float]]]) -> Ratio:
    ends = [log_ratio(m, o) for m, o in pairs]
    return Ratio(len(ends), tuple(a for a, _ in ends), tuple(b for _, b in ends),
                 sum(math.isinf(a) or math.isinf(b) for a, b in ends))
