"""Records -> comparisons. A comparison is every run of one experiment on one model and task (e.g.
`experiment=compare/minilm_sst2`). Its runs fall into cells, one per method and learning rate, whose runs
differ in the seed alone; each method gets two settings:

- tuned: the learning rate with the best mean *validation* score (ties: lower validation loss, then the
  smaller rate). Nothing here reads a test number to choose.
- shared: the comparison's `compare.shared_lr` for every method, as the papers compare.

Runs are identified by `results.run_key` (the config in the current schema, and the seed): a rerun or a
record written under an older schema counts once, as its newest record.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from lorabench import results, stats


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


@dataclass
class Comparison:
    experiment: str
    model: str
    task: str
    protocol: str
    baseline: str
    shared_lr: float | None
    methods: dict[str, dict[float, Cell]]   # method -> learning rate -> cell
    superseded: int = 0                      # runs of the same experiment under an older setting, left out

    @property
    def primary(self) -> str:
        return next(iter(next(iter(self.methods.values())).values())).record["metrics"]["primary"]

    def chosen(self, setting: str) -> dict[str, Cell]:
        """method -> its cell under `setting` ('tuned' or 'shared'); methods without one are left out."""
        if setting == "shared":
            return {m: cells[self.shared_lr] for m, cells in self.methods.items() if self.shared_lr in cells}
        return {m: cells[choose_lr(cells)] for m, cells in self.methods.items()}


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


def comparisons(records: list[dict]) -> list[Comparison]:
    """Every comparison in `records` (deduplicated with `latest` first), in a stable order."""
    groups = defaultdict(list)
    for r in records:
        if is_comparison(r):
            groups[(r["experiment"] or "", r["model"], r["task"], r["protocol"])].append(r)
    out = []
    for (experiment, model, task, protocol), recs in sorted(groups.items()):
        recs, superseded = newest_setting(recs)
        fam = {id(r): results.config_hash(r["config"], results.record_world(r), without=("seed", "trainer.lr"))
               for r in recs}
        families = defaultdict(set)   # an adapter run under two configs (say two ranks) is two methods
        for r in recs:
            families[r["adapter"]].add(fam[id(r)])
        methods: dict[str, dict[float, Cell]] = defaultdict(dict)
        for r in sorted(recs, key=lambda r: (r["adapter"], r["config"]["trainer"]["lr"], r["seed"])):
            name = r["adapter"] if len(families[r["adapter"]]) == 1 else f"{r['adapter']}@{fam[id(r)][:6]}"
            lr = float(r["config"]["trainer"]["lr"])
            methods[name].setdefault(lr, Cell(name, lr)).runs[r["seed"]] = r
        cmp = recs[0]["config"]["compare"]
        out.append(Comparison(experiment, model, task, protocol, cmp.get("baseline", "lora"),
                              float(cmp["shared_lr"]), dict(sorted(methods.items())), superseded))
    return out


def newest_setting(recs: list[dict]) -> tuple[list[dict], int]:
    """The runs of the experiment's newest setting (everything but method, rate and seed: the task, model,
    trainer), and how many runs older settings left out. When an experiment's definition changes, its
    earlier runs stay on disk but are never mixed into the new comparison's cells."""
    by_setting = defaultdict(list)
    for r in recs:
        by_setting[results.config_hash(r["config"], results.record_world(r),
                                       without=("seed", "trainer.lr", "adapter", "compare"))].append(r)
    newest = max(by_setting.values(), key=lambda rs: max(r.get("created_at", "") for r in rs))
    return newest, len(recs) - len(newest)


@dataclass
class Row:
    """One method in one setting: what the tables print."""
    method: str
    lr: float
    test: stats.Summary
    valid: stats.Summary | None
    vs_baseline: stats.Paired | None
    test_loss: stats.Summary | None
    steps_to_baseline: int | None    # first step the mean curve reaches the baseline's final training loss
    total_steps: int
    init_seconds: float
    trainable: int


def rows(c: Comparison, setting: str) -> list[Row]:
    chosen = c.chosen(setting)
    base = chosen.get(c.baseline)
    target = stats.final_loss(base.mean_curve()) if base and base.curves() else None
    out = []
    for method, cell in chosen.items():
        valid, loss, curve = cell.valid(), cell.test_loss(), cell.mean_curve()
        out.append(Row(method, cell.lr, stats.summarize(list(cell.test().values())),
                       stats.summarize(list(valid.values())) if valid else None,
                       stats.paired(cell.test(), base.test()) if base and method != c.baseline else None,
                       stats.summarize(list(loss.values())) if loss else None,
                       stats.steps_to(curve, target) if target is not None and curve else None,
                       curve[-1]["step"] if curve else 0, cell.cost("init_seconds"),
                       cell.record["params"]["trainable"]))
    return out
