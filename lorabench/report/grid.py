"""Records -> comparisons. A comparison is every run of one experiment (`experiment=compare/...`); its design
(methods, learning rates, seeds) is the experiment file's sweep, committed before its runs. Runs fall into
cells, one per method and learning rate, whose runs differ in the seed alone; each method gets two settings:

- tuned: the learning rate with the best mean *validation* score (ties: lower validation loss, then the
  smaller rate). Nothing here reads a test number to choose. A choice at the edge of the method's grid is
  flagged (`edge`): `make compare` runs the next rate beyond it (report/extend.py) until it is interior.
- shared: the comparison's `compare.shared_lr` for every method, as the papers compare.

Only current records count (`codeid`: the code that determined their numbers is today's); a comparison is
reported only when its grid is complete: every method x rate x seed of the design (and of any extension
rate) has a current record. Stale and missing runs are listed instead.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from lorabench import codeid, results
from lorabench.report import stats
from lorabench.scoring import item_weights

EXPERIMENTS = Path(__file__).resolve().parents[2] / "configs" / "experiment"
# The keys that follow the learning rate within one method's grid: LoRA-SB's init step is the training rate
# (configs/adapter/lora_sb.yaml: step_lr = ${trainer.lr}), so its runs at two rates are still one method.
RATE_KEYS = ("trainer.lr", "adapter.options.step_lr")


@dataclass
class Cell:
    method: str
    lr: float
    runs: dict[int, dict] = field(default_factory=dict)   # seed -> record

    def test(self) -> dict[int, float]:
        return {s: 100 * r["metrics"]["values"][r["metrics"]["primary"]] for s, r in self.runs.items()}

    def valid(self) -> dict[int, float]:
        return {s: 100 * r["metrics_valid"]["values"][r["metrics_valid"]["primary"]]
                for s, r in self.runs.items() if r.get("metrics_valid")}

    def valid_loss(self) -> float:
        losses = [r["loss"]["valid"] for r in self.runs.values() if (r.get("loss") or {}).get("valid") is not None]
        return statistics.fmean(losses) if losses else float("inf")

    def test_loss(self) -> dict[int, float]:
        return {s: r["loss"]["test"] for s, r in self.runs.items() if (r.get("loss") or {}).get("test") is not None}

    def curves(self) -> dict[int, list[dict]]:
        return {s: r["curve"] for s, r in self.runs.items() if r.get("curve")}

    def mean_curve(self) -> list[dict]:
        curves = list(self.curves().values())
        n = min((len(c) for c in curves), default=0)
        return [{"step": curves[0][i]["step"], "loss": statistics.fmean(c[i]["loss"] for c in curves)}
                for i in range(n)]

    def cost(self, key: str) -> float:
        return statistics.fmean(r["costs"][key] for r in self.runs.values())

    @property
    def record(self) -> dict:
        return self.runs[min(self.runs)]

    def items(self, seeds: list[int], split: str = "test") -> tuple[str, np.ndarray] | None:
        """(item-set digest, [seed, item] scores in points, weighted so a row's mean is the metric), or None
        when a seed lacks per-item results or the seeds scored different item sets."""
        rows, digest = [], None
        for s in seeds:
            it = ((self.runs[s].get("items") or {}).get(split)) if s in self.runs else None
            if not it or (digest is not None and it["digest"] != digest):
                return None
            digest = it["digest"]
            sc = it["scores"]
            x = np.array([float(c) for c in sc] if isinstance(sc, str) else sc, dtype=np.float64)
            w = np.array(item_weights(it.get("group_of"), len(x)))
            rows.append(100 * stats.weighted(x[None, :], w)[0])
        return (digest, np.stack(rows)) if rows else None

    def estimate(self, split: str = "test") -> stats.Estimate:
        """This cell's score with an interval over seeds and items."""
        seeds = sorted(self.runs)
        found = self.items(seeds, split)
        if found:
            return stats.crossed(found[1])
        vals = self.test() if split == "test" else self.valid()
        return stats.crossed([[vals[s]] for s in seeds])

    def diverged(self) -> bool:
        """Every run ended with a non-finite training loss or above its first one."""
        curves = list(self.curves().values())
        return bool(curves) and all(not math.isfinite(c[-1]["loss"]) or c[-1]["loss"] > c[0]["loss"] for c in curves)


def paired(method: Cell, base: Cell, split: str = "test") -> stats.Estimate | None:
    """method - base, paired by seed and, where both scored the same items, by item."""
    seeds = sorted(set(method.runs) & set(base.runs))
    if not seeds:
        return None
    a, b = method.items(seeds, split), base.items(seeds, split)
    if a and b and a[0] == b[0]:
        return stats.crossed(a[1] - b[1])
    ta, tb = method.test(), base.test()
    return stats.crossed([[ta[s] - tb[s]] for s in seeds])


@dataclass
class Comparison:
    experiment: str
    model: str
    task: str
    protocol: str
    baseline: str
    shared_lr: float | None
    methods: dict[str, dict[float, Cell]]   # method -> learning rate -> cell
    superseded: int = 0                      # current runs of the same experiment under an older setting
    stale: list[tuple[dict, list[str]]] = field(default_factory=list)   # (record, parts whose code changed)
    missing: list[tuple[str, float, int]] = field(default_factory=list)  # (method, lr, seed) with no current run
    design: dict | None = None               # the experiment file's methods, rates and seeds

    @property
    def complete(self) -> bool:
        return not self.missing and bool(self.methods)

    @property
    def primary(self) -> str:
        return next(iter(next(iter(self.methods.values())).values())).record["metrics"]["primary"]

    def chosen(self, setting: str) -> dict[str, Cell]:
        """method -> its cell under `setting` ('tuned' or 'shared'); methods without one are left out."""
        if setting == "shared":
            return {m: cells[self.shared_lr] for m, cells in self.methods.items() if self.shared_lr in cells}
        return {m: cells[choose_lr(cells)] for m, cells in self.methods.items()}

    def edge(self, method: str) -> str | None:
        """'low' / 'high' when the method's validation-chosen rate is the smallest / largest it ran."""
        cells = self.methods[method]
        lr = choose_lr(cells)
        return "low" if lr == min(cells) and len(cells) > 1 else "high" if lr == max(cells) and len(cells) > 1 \
            else None


def choose_lr(cells: dict[float, Cell]) -> float:
    """The learning rate with the best mean validation score; validation loss, then the smaller rate, break
    ties. Reads validation numbers only."""
    def rank(lr):
        valid = cells[lr].valid()
        return (-statistics.fmean(valid.values()) if valid else float("inf"), cells[lr].valid_loss(), lr)
    return min(cells, key=rank)


def latest(records: list[dict]) -> list[dict]:
    """Successful records, one per run (`results.run_key`): the newest where a run has several."""
    best = {}
    for r in records:
        if r.get("status") != "success":
            continue
        key = results.run_key(r)
        if key not in best or (r.get("created_at", ""), r.get("run_id", "")) > \
                (best[key].get("created_at", ""), best[key].get("run_id", "")):
            best[key] = r
    return [best[k] for k in sorted(best)]


def is_comparison(record: dict) -> bool:
    return (record["config"].get("compare") or {}).get("shared_lr") is not None


def design(experiment: str) -> dict | None:
    """The committed design of `experiment`: {'methods', 'lrs', 'seeds'} from its sweep; None without a file."""
    path = EXPERIMENTS / f"{experiment}.yaml"
    if not path.is_file():
        return None
    params = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper", {}).get("params") or {}

    def values(key, cast):
        return [cast(v.strip()) for v in str(params[key]).split(",")] if key in params else []
    return {"methods": values("adapter", str), "lrs": values("trainer.lr", float), "seeds": values("seed", int)}


def comparisons(records: list[dict]) -> list[Comparison]:
    """Every comparison in `records` (deduplicated with `latest` first), one per experiment, in a stable order.
    A comparison's model, task and protocol are its setting's (an experiment whose model changed is one
    comparison, its older runs superseded or stale)."""
    groups = defaultdict(list)
    for r in records:
        if is_comparison(r):
            groups[r["experiment"] or f"{r['model']}/{r['task']}"].append(r)
    return [_comparison(experiment, recs) for experiment, recs in sorted(groups.items())]


def _comparison(experiment: str, recs: list[dict]) -> Comparison:
    stale = [(r, parts) for r in recs if (parts := codeid.stale_parts(r))]
    stale_ids = {id(r) for r, _ in stale}
    current = [r for r in recs if id(r) not in stale_ids]
    current, superseded = newest_setting(current) if current else ([], 0)
    if current:   # a stale record of another setting is a design that changed after its results were seen
        shown = setting(current[0])
        superseded += sum(setting(r) != shown for r, _ in stale)
        stale = [(r, parts) for r, parts in stale if setting(r) == shown]
    shown = current[0] if current else max(recs, key=lambda r: r.get("created_at", ""))
    fam = {id(r): results.config_hash(r["config"], results.record_world(r), without=("seed", *RATE_KEYS))
           for r in current}
    families = defaultdict(set)   # an adapter run under two configs (say two ranks) is two methods
    for r in current:
        families[r["adapter"]].add(fam[id(r)])
    methods: dict[str, dict[float, Cell]] = defaultdict(dict)
    for r in sorted(current, key=lambda r: (r["adapter"], r["config"]["trainer"]["lr"], r["seed"])):
        name = r["adapter"] if len(families[r["adapter"]]) == 1 else f"{r['adapter']}@{fam[id(r)][:6]}"
        lr = float(r["config"]["trainer"]["lr"])
        methods[name].setdefault(lr, Cell(name, lr)).runs[r["seed"]] = r
    cmp = (shown["config"].get("compare") or {})
    d = design(experiment)
    c = Comparison(experiment, shown["model"], shown["task"], shown["protocol"], cmp.get("baseline", "lora"),
                   float(cmp["shared_lr"]), dict(sorted(methods.items())), superseded, stale, [], d)
    c.missing = missing(c)
    return c


def missing(c: Comparison) -> list[tuple[str, float, int]]:
    """(method, lr, seed) of the design, and of every rate a method was extended to, with no current run."""
    d = c.design or {"methods": sorted(c.methods), "lrs": [], "seeds": []}
    seeds = d["seeds"] or sorted({s for cells in c.methods.values() for cell in cells.values() for s in cell.runs})
    out = []
    for m in d["methods"] + [m for m in c.methods if m not in d["methods"]]:
        cells = c.methods.get(m, {})
        for lr in sorted(set(d["lrs"]) | set(cells)):
            out += [(m, lr, s) for s in seeds if s not in (cells.get(lr).runs if lr in cells else {})]
    return out


def setting(record: dict) -> str:
    """What a comparison's runs share: everything but the method, rate and seed (task, model, trainer)."""
    return results.config_hash(record["config"], results.record_world(record),
                               without=("seed", "trainer.lr", "adapter", "compare"))


def newest_setting(recs: list[dict]) -> tuple[list[dict], int]:
    """The runs of the experiment's newest setting (everything but method, rate and seed: the task, model,
    trainer), and how many runs older settings left out. When an experiment's definition changes, its
    earlier runs stay on disk but are never mixed into the new comparison's cells."""
    by_setting = defaultdict(list)
    for r in recs:
        by_setting[setting(r)].append(r)
    newest = max(by_setting.values(), key=lambda rs: max(r.get("created_at", "") for r in rs))
    return newest, len(recs) - len(newest)


def scaling(record: dict) -> str:
    """How the method scales B A at one learning rate: 'alpha/r = 2' or 'alpha/sqrt(r) = 5.66'."""
    a = record["config"]["adapter"]
    r, alpha = a.get("r"), a.get("alpha")
    if not r or alpha is None:
        return "—"
    if a.get("use_rslora"):
        return f"α/√r = {alpha}/√{r} = {alpha / math.sqrt(r):.3g}"
    return f"α/r = {alpha}/{r} = {alpha / r:.3g}"


@dataclass
class Row:
    """One method in one setting: what the tables print."""
    method: str
    lr: float
    test: stats.Estimate
    valid: stats.Summary | None
    vs_baseline: stats.Estimate | None      # Holm-adjusted over the table (p_adj)
    test_loss: stats.Summary | None
    speed: stats.Ratio | None               # baseline's steps / method's, to the baseline's final loss
    total_steps: int
    init_seconds: float
    trainable: int
    edge: str | None
    scaling: str


def step_pairs(method: Cell, other: Cell, baseline: Cell) -> list:
    """Per seed: (method's, other's) step intervals to the baseline's final training loss (that seed's)."""
    b, m, o = baseline.curves(), method.curves(), other.curves()
    out = []
    for seed in sorted(set(b) & set(m) & set(o)):
        target = stats.final_loss(b[seed])
        out.append((stats.steps_interval(m[seed], target), stats.steps_interval(o[seed], target)))
    return out


def rows(c: Comparison, setting: str) -> list[Row]:
    chosen = c.chosen(setting)
    base = chosen.get(c.baseline)
    vs = stats.holm_family({m: e for m, cell in chosen.items() if m != c.baseline and base
                            and (e := paired(cell, base)) is not None})
    out = []
    for method, cell in chosen.items():
        valid, loss, curve = cell.valid(), cell.test_loss(), cell.mean_curve()
        pairs = step_pairs(cell, base, base) if base and method != c.baseline else []
        out.append(Row(method, cell.lr, cell.estimate(), stats.summarize(list(valid.values())) if valid else None,
                       vs.get(method), stats.summarize(list(loss.values())) if loss else None,
                       stats.ratio(pairs) if pairs else None, curve[-1]["step"] if curve else 0,
                       cell.cost("init_seconds"), cell.record["params"]["trainable"],
                       c.edge(method) if setting == "tuned" else None, scaling(cell.record)))
    return out
