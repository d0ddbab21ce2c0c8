"""Statistics over seeds: mean, sample std, a 95 % t-interval, the paired test against the baseline over the
same seeds (scipy), and how many steps a training-loss curve needs to reach a target."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

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
class Paired:
    n: int
    diff: Summary       # method - baseline, per seed
    p: float | None     # two-sided paired t-test (scipy.stats.ttest_rel); None where undefined

    @property
    def verdict(self) -> str:
        """'better' / 'worse' when the 95 % interval of the paired difference excludes 0, else 'tie'."""
        if self.n < 2:
            return "tie"
        return "better" if self.diff.lo > 0 else "worse" if self.diff.hi < 0 else "tie"


def paired(method: dict[int, float], baseline: dict[int, float]) -> Paired | None:
    """Paired comparison over the seeds both have (seed -> value)."""
    from scipy.stats import ttest_rel

    seeds = sorted(set(method) & set(baseline))
    if not seeds:
        return None
    a, b = [method[s] for s in seeds], [baseline[s] for s in seeds]
    p = None
    if len(seeds) > 1:
        res = ttest_rel(a, b)
        p = None if math.isnan(res.pvalue) else float(res.pvalue)
    return Paired(len(seeds), summarize([x - y for x, y in zip(a, b)]), p)


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
    """The first optimizer step at which the trailing-mean training loss is at or below `target`; None if
    it never is."""
    for point, value in zip(curve, smoothed([p["loss"] for p in curve], window)):
        if value <= target + 1e-9 * abs(target):   # a curve's own final loss counts as reached
            return point["step"]
    return None
