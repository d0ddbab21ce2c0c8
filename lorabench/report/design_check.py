"""Is a complete comparison a fair test? What its design must show, in numbers, from its own records:

- the base model's test score (one run of the comparison with eval_base=true; `make compare` adds it) and
  the baseline's gain over it at its chosen rate: a comparison where LoRA learns nothing decides nothing;
- the baseline's training loss by quarter of training at its chosen rate (mean over seeds): it has
  flattened when the last quarter falls by at most FLAT of the whole fall from the first quarter to the last;
- the methods that collapsed: whose chosen rate scores less than COLLAPSE points above the base model;
- the wall time: the union of the records' run intervals [created_at - run_seconds, created_at], so pauses
  between interrupted sweeps do not count and members run side by side count once.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from lorabench.report.grid import Comparison

FLAT = 0.10       # last quarter's fall / whole fall: at most this is flat
COLLAPSE = 5.0    # points above the base model: below this a method learned nothing
# What a comparison's design must show (issue 22): the baseline's gain over the base model, at most this many
# collapsed methods, and its wall time on the 2-core reference machine with every method in it.
MIN_GAIN, MAX_COLLAPSED, MAX_WALL_MIN = 10.0, 1, 150
# The methods that joined in issue 25; the runs of the others (the original eleven, LoRA to CorDA) must fit
# MAX_WALL_CORE_MIN on their own.
NEWER = frozenset({"lora_sb", "nlora", "nlora_inttune", "loldu", "lora_pro", "allora", "mica", "kasa"})
MAX_WALL_CORE_MIN = 90


@dataclass
class Check:
    base: float | None            # the base model's test score, %
    base_run: str | None          # the record that scored it
    gain: float | None            # baseline's tuned test mean - base, points
    quarters: list[float]         # baseline's mean training loss per quarter of training (tuned rate)
    collapsed: list[str]          # methods at most COLLAPSE points above the base model (tuned rates)
    wall_s: float | None          # union of the records' run intervals
    n_records: int
    wall_core_s: float | None = None   # the same over the runs of the methods not in NEWER
    n_core: int = 0

    @property
    def flat(self) -> bool | None:
        if len(self.quarters) < 4:
            return None
        whole = self.quarters[0] - self.quarters[-1]
        return whole > 0 and (self.quarters[-2] - self.quarters[-1]) <= FLAT * whole


def base_score(c: Comparison) -> tuple[float | None, str | None]:
    """The newest base-model score in the comparison's records (any member with eval_base=true)."""
    found = [r for cells in c.methods.values() for cell in cells.values() for r in cell.runs.values()
             if r.get("metrics_base")]
    if not found:
        return None, None
    r = max(found, key=lambda r: (r.get("created_at", ""), r.get("run_id", "")))
    m = r["metrics_base"]
    return 100 * m["values"][m["primary"]], r["run_id"]


def quarters(curve: list[dict]) -> list[float]:
    n = len(curve)
    if n < 4:
        return []
    return [statistics.fmean(p["loss"] for p in curve[i * n // 4:(i + 1) * n // 4]) for i in range(4)]


def wall_seconds(records: list[dict]) -> float | None:
    spans = []
    for r in records:
        run_s = (r.get("costs") or {}).get("run_seconds")
        if run_s is None or not r.get("created_at"):
            return None   # an older record without its run time: no honest total
        end = datetime.fromisoformat(r["created_at"]).timestamp()
        spans.append((end - run_s, end))
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def check(c: Comparison) -> Check:
    base, base_run = base_score(c)
    tuned = c.chosen("tuned")
    b = tuned.get(c.baseline)
    gain = statistics.fmean(b.test().values()) - base if b is not None and base is not None else None
    collapsed = sorted(m for m, cell in tuned.items()
                       if base is not None and statistics.fmean(cell.test().values()) < base + COLLAPSE)
    records = [r for cells in c.methods.values() for cell in cells.values() for r in cell.runs.values()]
    core = [r for m, cells in c.methods.items() if m not in NEWER for cell in cells.values() for r in cell.runs.values()]
    return Check(base, base_run, gain, quarters(b.mean_curve()) if b is not None else [], collapsed,
                 wall_seconds(records), len(records), wall_seconds(core), len(core))


def targets(k: Check) -> str:
    """The design's targets, each met or not, in one line ("—" where not yet measured)."""
    def mark(ok):
        return "—" if ok is None else "met" if ok else "**not met**"

    gain = None if k.gain is None else k.gain >= MIN_GAIN
    collapsed = None if k.base is None else len(k.collapsed) <= MAX_COLLAPSED
    # in whole minutes, as the wall times are shown
    wall = None if k.wall_s is None else round(k.wall_s / 60) <= MAX_WALL_MIN
    core = None if k.wall_core_s is None else round(k.wall_core_s / 60) <= MAX_WALL_CORE_MIN
    return "; ".join([f"gain ≥ {MIN_GAIN:g} points: {mark(gain)}",
                      f"at most {MAX_COLLAPSED} collapsed: {mark(collapsed)}"
                      + (f" ({len(k.collapsed)})" if k.base is not None else ""),
                      f"loss flat: {mark(k.flat)}",
                      f"wall ≤ {MAX_WALL_MIN} min: {mark(wall)}",
                      f"original methods ≤ {MAX_WALL_CORE_MIN} min: {mark(core)}"])


def text(c: Comparison) -> str:
    """The check as a paragraph for the comparison's section."""
    k = check(c)
    out = []
    if k.base is None:
        out.append("Base model: not scored yet (`make compare` scores it once, with eval_base=true).")
    else:
        out.append(f"Base model (untrained adapter, run `{k.base_run}`): {k.base:.1f} %; {c.baseline} at its "
                   f"chosen rate: {k.gain:+.1f} points over it.")
    if k.quarters:
        verdict = {True: "flat", False: "still falling", None: "—"}[k.flat]
        out.append(f"{c.baseline}'s training loss by quarter of training (chosen rate, mean over seeds): "
                   + " → ".join(f"{q:.3f}" for q in k.quarters)
                   + f": {verdict} (flat: the last quarter falls by at most {FLAT:.0%} of the whole fall).")
    if k.base is not None:
        out.append(f"Collapsed (chosen rate less than {COLLAPSE:g} points above the base model): "
                   + (", ".join(k.collapsed) if k.collapsed else "none") + ".")
    if k.wall_s is not None:
        out.append(f"Wall time of its {k.n_records} runs: {k.wall_s / 60:.0f} min (the union of their run "
                   "intervals, from the records)"
                   + (f"; of the original methods' {k.n_core} runs: {k.wall_core_s / 60:.0f} min."
                      if k.wall_core_s is not None else "."))
    out.append(f"Design targets: {targets(k)}.")
    return "\n" + " ".join(out) + "\n"
