"""Experiments that are not comparisons (paper tables, smoke runs): one row per config over seeds, with the
base model's score as its own row and the paper's number beside ours; and each packaged task's base -> trained
line for README."""
from __future__ import annotations

import io
import statistics
from collections import defaultdict

from lorabench import results
from lorabench.report.grid import is_comparison, latest
from lorabench.report.paper_tables import paper_cell, paper_metric, paper_number

LOWER_IS_BETTER = {"init_s", "train_s", "peak_mb", "final_loss"}
BASE = "(base model)"


def rows(records: list[dict]) -> list[dict]:
    """One row per config (runs differing in the seed alone): mean and std over seeds of every metric and cost."""
    groups = defaultdict(list)
    for r in latest(records):
        if is_comparison(r):
            continue
        cell = results.config_hash(r["config"], results.record_world(r), without=("seed",))[:8]
        key = (r.get("experiment") or "", r["model"], r["task"], r["protocol"])
        groups[key + (r["adapter"], cell)].append(r)
        if r.get("metrics_base"):   # eval_base=true: the untrained model's score, one row per table
            base = {**r, "adapter": BASE, "init": "—", "metrics": r["metrics_base"], "curve": [],
                    "params": {"trainable": 0}}
            groups[key + (BASE, "")].append(base)
    cells = defaultdict(set)
    for (*key, adapter, cell) in groups:
        cells[tuple(key) + (adapter,)].add(cell)
    out = []
    for (experiment, model, task, protocol, adapter, cell), recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: (r["seed"], r["run_id"]))
        if adapter == BASE:   # the base model's score once per seed, however many adapters were scored beside it
            recs = list({r["seed"]: r for r in reversed(recs)}.values())
        label = adapter if len(cells[(experiment, model, task, protocol, adapter)]) == 1 else f"{adapter} ({cell})"
        primary = recs[0]["metrics"]["primary"]
        row = {"experiment": experiment, "model": model, "task": task, "protocol": protocol, "adapter": label,
               "init": recs[0]["init"], "mini": recs[0]["mini"], "primary": primary, "n_seeds": len({r["seed"] for r in recs}),
               "n_runs": len(recs), "n_eval": recs[0]["metrics"]["n"],
               "trainable_params": recs[0]["params"]["trainable"], "paper": paper_number(experiment, adapter, task),
               "stale": adapter != BASE and not all(results.is_current(r) for r in recs)}
        series = {f"metric:{k}": [100 * r["metrics"]["values"][k] for r in recs] for k in recs[0]["metrics"]["values"]}
        if row["paper"] is not None:   # ours minus the paper's number, on the paper's own scorer where we have it
            row["paper_metric"] = paper_metric(experiment, adapter, recs[0]["metrics"]["values"]) or primary
            series["vs_paper"] = [v - row["paper"] for v in series[f"metric:{row['paper_metric']}"]]
        if adapter != BASE:
            series.update({"init_s": [r["costs"]["init_seconds"] for r in recs],
                           "train_s": [r["costs"]["train_seconds"] for r in recs],
                           "peak_mb": [max(r["costs"]["init_peak_mb"], r["costs"]["train_peak_mb"]) for r in recs],
                           "final_loss": [r["curve"][-1]["loss"] for r in recs if r["curve"]]})
        for k, v in series.items():
            if v:
                row[k] = statistics.fmean(v)
                row[k + ":std"] = statistics.stdev(v) if len(v) > 1 else 0.0
        out.append(row)
    return out


def _fmt(row: dict, key: str, digits: int) -> str:
    if key not in row:
        return "—"
    s = f"{row[key]:.{digits}f}"
    return s + (f" ± {row[key + ':std']:.{digits}f}" if row["n_seeds"] > 1 else "")


def experiment_tables(table: list[dict]) -> str:
    buf = io.StringIO()
    by_mt = defaultdict(list)
    for row in table:
        by_mt[(row["experiment"], row["model"], row["task"], row["protocol"])].append(row)
    for (experiment, model, task, protocol), group in by_mt.items():
        metrics = sorted({k for r in group for k in r if k.startswith("metric:") and not k.endswith(":std")},
                         key=lambda k: (k != f"metric:{group[0]['primary']}", k))
        cols = metrics + ["final_loss", "init_s", "train_s", "peak_mb"]
        best = {}
        for c in cols:
            vals = [r[c] for r in group if c in r]
            if len(vals) > 1:
                best[c] = min(vals) if c in LOWER_IS_BETTER else max(vals)
        title = f"{experiment}: " if experiment else ""
        buf.write(f"\n### {title}{model} · {task} ({protocol} protocol{', mini split' if group[0]['mini'] else ''}, "
                  f"{group[0]['n_eval']} test problems)\n\n")
        header = ["adapter", "init", "seeds"] + [c.removeprefix("metric:") for c in cols] + ["trainable", "paper",
                                                                                              "Δ paper"]
        buf.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
        for r in group:
            cells = [r["adapter"] + (" (older code)" if r["stale"] else ""), r["init"], str(r["n_seeds"])]
            for c in cols:
                digits = 4 if c == "final_loss" else (0 if c == "peak_mb" else 1 if c in ("init_s", "train_s") else 2)
                cell = _fmt(r, c, digits)
                cells.append(f"**{cell}**" if c in best and c in r and r[c] == best[c] else cell)
            cells += [f"{r['trainable_params']:,}", paper_cell(experiment, r["paper"]),
                      f"{r['vs_paper']:+.2f} ({r['paper_metric']})" if "vs_paper" in r else "—"]
            buf.write("| " + " | ".join(cells) + " |\n")
    return buf.getvalue()


def base_to_trained(records: list[dict]) -> str:
    """One line per task run with eval_base=true outside comparisons: the base model's score -> trained."""
    newest = {}
    for r in latest(records):
        if r.get("metrics_base") and not is_comparison(r):
            key = (r["task"], r["model"], r["protocol"])
            if key not in newest or r.get("created_at", "") > newest[key].get("created_at", ""):
                newest[key] = r
    if not newest:
        return ""
    buf = io.StringIO()
    buf.write("\nEach packaged task with LoRA (`python run.py task=<task> eval_base=true`), its newest run, test "
              "primary metric base -> trained:\n\n| task | model | protocol | test items | base -> trained | steps "
              "| code |\n|---|---|---|---|---|---|---|\n")
    for (task, model, protocol), r in sorted(newest.items()):
        p = r["metrics"]["primary"]
        buf.write(f"| `{task}` | {model} | {protocol} | {r['metrics']['n']} | {100 * r['metrics_base']['values'][p]:.1f} "
                  f"-> {100 * r['metrics']['values'][p]:.1f} % ({p}) | {r.get('steps', '—')} | "
                  f"{'current' if results.is_current(r) else 'older'} |\n")
    return buf.getvalue()
