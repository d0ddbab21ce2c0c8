"""results/ -> results/LEADERBOARD.md, results/leaderboard.csv and plots.

A pure function of the records, claims.yaml and the papers' reference numbers: two runs give the same bytes.
Comparisons (configs/experiment/compare/) get the claims' verdicts, a tuned table, a shared-rate table and
their sensitivity; other experiments get one row per config, averaged over seeds only.

    python -m lorabench.report.leaderboard [--results results] [--readme README.md]
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

from lorabench import results
from lorabench.report import across, design_check, readme
from lorabench.report import claims as claims_mod
from lorabench.report import plots as figures
from lorabench.report.grid import Comparison, comparisons, is_comparison, latest, rows as cmp_rows
from lorabench.report.experiments import base_to_trained, experiment_tables, rows
from lorabench.report.paper_tables import NOT_RUN

# ---- comparisons ----------------------------------------------------------------------------------------

PROCEDURE = (
    "How to read the comparisons. Every number is a test-split number at a learning rate chosen on the validation "
    "split only. Δ is a method's score minus the baseline's, paired by seed and by test item; its 95 % interval "
    "counts both sources of noise (seeds and test items: a crossed random-effects model, Satterthwaite's degrees "
    "of freedom; `lorabench/report/stats.py`), or says *seeds only* where records lack per-item results. A cell "
    "is better or worse than the baseline only when its **Holm-adjusted** p (over the table's comparisons to the "
    "baseline) is below 0.05. Convergence is the ratio of steps to the baseline's final training loss on the log "
    "scale; a run that never gets there is censored (an open end, ∞ or 0), never given a made-up step count. "
    "An edge choice (⇤ lowest rate, ⇥ highest) is a bound, not an optimum, until `make compare` has run the rate "
    "beyond it. A comparison is shown only from one complete grid of current records (the code that determined "
    "their numbers is today's, `lorabench/codeid.py`); stale and missing runs are listed instead. Claims are "
    "decided on the corrected tests and name the comparison that decided them.\n")


def _title(c: Comparison) -> str:
    return f"{c.experiment}: {c.model} · {c.task}"


def _verdict(v) -> str:
    if v is None:
        return "—"
    word = {claims_mod.HOLDS: "**holds**", claims_mod.FAILS: "**does not hold**"}.get(v.verdict, v.verdict)
    return f"{word}: {v.evidence}"


def claims_section(cmps: list[Comparison], claims: list[dict]) -> str:
    buf = io.StringIO()
    buf.write("\n## The papers' claims, checked at mini scale\n\n")
    buf.write("Each claim (lorabench/report/claims.yaml) in each complete comparison: every method at the "
              "comparison's shared learning rate (as the papers compare), and every method at its own "
              "validation-chosen rate; claims about an average over tasks also across all complete comparisons.\n\n")
    buf.write("| claim | source | comparison | shared learning rate | tuned learning rates |\n|---|---|---|---|---|\n")
    n = 0
    for claim in claims:
        for c in cmps:
            for _, shared, tuned in claims_mod.verdicts([claim], c):
                buf.write(f"| {claim['says']} | {claim['source']} | {_title(c)} | {_verdict(shared)} | "
                          f"{_verdict(tuned)} |\n")
                n += 1
        shared, tuned = across.check(claim, cmps, "shared"), across.check(claim, cmps, "tuned")
        if shared or tuned:
            buf.write(f"| {claim['says']} | {claim['source']} | across tasks | {_verdict(shared)} | "
                      f"{_verdict(tuned)} |\n")
            n += 1
    if not n:
        buf.write("| (no comparison is complete yet) | | | | |\n")
    return buf.getvalue()


def _pm(s, digits=2) -> str:
    return "—" if s is None else f"{s.mean:.{digits}f}" + (f" ± {s.std:.{digits}f}" if s.n > 1 else "")


def _delta(e) -> str:
    if e is None:
        return "—"
    mark = {"better": " ▲", "worse": " ▼"}.get(e.verdict, "")
    return f"{e.mean:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}]{mark}"


SIGNED = {"mcc", "pearson", "spearman"}   # metrics that can be negative; the rest lie in [0, 100]


def _row_cells(r, setting: str, primary: str = "accuracy") -> list[str]:
    vs = r.vs_baseline
    lo, hi = r.test.interval()
    if primary not in SIGNED:   # an interval never leaves what the metric can take
        lo, hi = max(lo, 0.0), min(hi, 100.0)
    p = "—" if vs is None or vs.p_adj is None else f"{vs.p_adj:.3f}"
    loss = "—" if r.test_loss is None else f"{r.test_loss.mean:.4f} ({math.exp(r.test_loss.mean):.3f})"
    edge = {"low": " ⇤", "high": " ⇥"}.get(r.edge, "")
    cells = [r.method, f"{r.lr:g}{edge}", f"{r.test.mean:.2f}", f"[{lo:.2f}, {hi:.2f}]", _delta(vs), p,
             _pm(r.valid), loss, "—" if r.speed is None else r.speed.text(), f"{r.init_seconds:.1f}",
             f"{r.trainable:,}"]
    return cells + ([r.scaling] if setting == "shared" else [])


def incomplete_section(c: Comparison) -> str:
    d = c.design or {}
    total = len(d.get("methods", [])) * len(d.get("lrs", [])) * len(d.get("seeds", []))
    buf = io.StringIO()
    buf.write(f"\n## {_title(c)}\n\n**Incomplete**: {len(c.missing)} runs of the grid"
              + (f" ({total} in the design)" if total else "") + " have no current record, so nothing of this "
              "comparison is reported; `make compare` runs exactly those.")
    if c.stale:
        parts = defaultdict(int)
        for _, ps in c.stale:
            parts[", ".join(ps)] += 1
        buf.write(f" {len(c.stale)} records are stale (their code changed since they ran: "
                  + "; ".join(f"{n} by {p}" for p, n in sorted(parts.items())) + ").")
    by_method = defaultdict(int)
    for m, _, _ in c.missing:
        by_method[m] += 1
    buf.write("\n\nMissing runs per method: " + ", ".join(f"{m} {n}" for m, n in sorted(by_method.items())) + ".\n")
    return buf.getvalue()


def comparison_section(c: Comparison) -> str:
    if not c.complete:
        return incomplete_section(c)
    buf = io.StringIO()
    rec = next(iter(next(iter(c.methods.values())).values())).record
    lrs = sorted({lr for cells in c.methods.values() for lr in cells})
    seeds = sorted({s for cells in c.methods.values() for cell in cells.values() for s in cell.runs})
    n_valid = (rec.get("metrics_valid") or {}).get("n", 0)
    buf.write(f"\n## {_title(c)}\n\n{c.protocol} protocol{', mini split' if rec['mini'] else ''}: "
              f"{rec['metrics']['n']} test and {n_valid} validation problems, seeds {', '.join(map(str, seeds))}, "
              f"learning rates {', '.join(f'{x:g}' for x in lrs)}; baseline {c.baseline}. {c.primary} in %, with "
              f"its 95 % interval over seeds and items; Δ vs {c.baseline} paired by seed and item (▲/▼: Holm p < "
              f"0.05); held-out loss is the test split's per-target loss (perplexity); speed: {c.baseline}'s steps "
              f"to its final training loss over the method's (log-scale interval over seeds).\n")
    buf.write(design_check.text(c))
    if c.superseded:
        buf.write(f"\n**The design changed after results were seen**: {c.superseded} earlier runs of this experiment "
                  "under another setting (task, model or trainer) are in `results/runs/` but not here; a comparison "
                  "shows its newest setting only.\n")
    if c.stale:
        buf.write(f"\n{len(c.stale)} stale records of this experiment (older code) are left out.\n")
    header = ["method", "lr", f"test {c.primary}", "95% CI", f"Δ vs {c.baseline} [95% CI]", "Holm p",
              f"valid {c.primary}", "held-out loss (ppl)", "speed", "init s", "trainable"]
    for setting, title, extra in (
            ("tuned", f"Tuned: each method at the learning rate of its best validation {c.primary}", []),
            ("shared", f"Paper setting: every method at lr {c.shared_lr:g}", ["scaling of B A"])):
        rs = cmp_rows(c, setting)
        if not rs:
            continue
        rs.sort(key=lambda r: (-r.test.mean, r.method))
        buf.write(f"\n### {title}\n\n")
        if setting == "shared":
            buf.write("At one learning rate the methods' scalings differ (α/r, α/√r, α itself), so this table "
                      "compares scalings as much as inits.\n\n")
        edges = [r for r in rs if r.edge]
        if edges:
            buf.write("Edge choices (bounds, not optima): " + ", ".join(f"{r.method} {r.lr:g} "
                      f"({'lowest' if r.edge == 'low' else 'highest'} rate run)" for r in edges) + ".\n\n")
        cols = header + extra
        buf.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for r in rs:
            buf.write("| " + " | ".join(_row_cells(r, setting, c.primary)) + " |\n")
    tuned = {m: cell.lr for m, cell in c.chosen("tuned").items()}
    buf.write(f"\n### Every learning rate: validation / test {c.primary} (mean over seeds; chosen rate in bold)\n\n")
    buf.write("| method | " + " | ".join(f"{x:g}" for x in lrs) + " |\n|" + "---|" * (len(lrs) + 1) + "\n")
    for m, cells in c.methods.items():
        out = []
        for lr in lrs:
            if lr not in cells:
                out.append("—")
                continue
            v, t = cells[lr].valid(), cells[lr].test()
            s = f"{statistics.fmean(v.values()):.1f} / {statistics.fmean(t.values()):.1f}" if v else \
                f"— / {statistics.fmean(t.values()):.1f}"
            out.append(f"**{s}**" if tuned[m] == lr else s)
        buf.write(f"| {m} | " + " | ".join(out) + " |\n")
    slug = figures.slug(c)
    buf.write(f"\n![sensitivity](plots/{slug}__sensitivity.png)\n![loss](plots/{slug}__loss_tuned.png)\n"
              f"![cost vs gain](plots/{slug}__cost_gain.png)\n")
    return buf.getvalue()


def across_section(cmps: list[Comparison], baseline: str = "lora") -> str:
    """Per method across every complete comparison: mean Δ to the baseline and mean rank, both settings."""
    tables = {s: across.summary(cmps, s, baseline) for s in ("tuned", "shared")}
    if not any(tables.values()):
        return ""
    buf = io.StringIO()
    n = max(len(t) and t[0].n for t in tables.values())
    buf.write(f"\n## Across tasks ({n} complete comparisons)\n\nMean over the comparisons of each method's paired "
              f"difference to {baseline} (95 % interval from each comparison's seed and item noise; ▲/▼: Holm p < "
              "0.05 over the methods) and its mean rank (1 = best; 95 % parametric-bootstrap interval).\n\n")
    buf.write(f"| method | tuned Δ vs {baseline} | tuned rank | shared Δ vs {baseline} | shared rank |\n"
              "|---|---|---|---|---|\n")
    rows_by = {s: {r.method: r for r in t} for s, t in tables.items()}
    methods = sorted(set(rows_by["tuned"]) | set(rows_by["shared"]),
                     key=lambda m: (rows_by["tuned"][m].rank if m in rows_by["tuned"] else 99, m))
    for m in methods:
        cells = []
        for s in ("tuned", "shared"):
            r = rows_by[s].get(m)
            cells += ["—", "—"] if r is None else [_delta(r.vs_baseline) if r.vs_baseline else "—",
                                                   f"{r.rank:.2f} [{r.rank_lo:.1f}, {r.rank_hi:.1f}]"]
        buf.write(f"| {m} | " + " | ".join(cells) + " |\n")
    return buf.getvalue()


def readme_tables(cmps: list[Comparison], claims: list[dict], records: list[dict] = ()) -> str:
    """What README shows: each comparison's state, the answer across tasks, the claims' verdicts, and each
    packaged task's base -> trained."""
    buf = io.StringIO()
    for c in cmps:
        state = "complete" if c.complete else f"incomplete, {len(c.missing)} runs to go"
        if c.complete:
            k = design_check.check(c)
            state += "".join([f"; {c.baseline} {k.gain:+.1f} points over the base model" if k.gain is not None else "",
                              f"; wall time {k.wall_s / 60:.0f} min for {k.n_records} runs" if k.wall_s else "",
                              f" ({design_check.targets(k)})"])
        buf.write(f"- `{c.experiment}` ({c.model} · {c.task}): {state}\n")
    buf.write("\n" + PROCEDURE + across_section(cmps) + claims_section(cmps, claims) + base_to_trained(records))
    return buf.getvalue().replace("\n## ", "\n#### ")


# ---- the files -------------------------------------------------------------------------------------------

def markdown(table: list[dict], cmps: list[Comparison], claims: list[dict], n_records: int) -> str:
    buf = io.StringIO()
    buf.write("# lorabench leaderboard\n\n")
    buf.write(f"Generated by `make leaderboard` from {n_records} records in `results/runs/` — do not edit by hand. "
              "`mini` tasks are offline splits of packaged data: their numbers are not comparable with the papers' "
              "tables. A run counts once (its newest current record) however often it was rerun.\n\n")
    if cmps:
        buf.write(PROCEDURE)
        buf.write(across_section(cmps))
        buf.write(claims_section(cmps, claims))
        for c in cmps:
            buf.write(comparison_section(c))
    if table:
        buf.write("\n## Other experiments\n\nMetrics in %, mean ± std over seeds of one config; **bold** is the best "
                  "in its column for that model and task. The paper column is the paper's number for the same "
                  "experiment (configs/experiment/), where one exists; Δ paper is our mean minus it, on the paper's "
                  "own scorer (`accuracy_official`, lorabench/eval/official.py) where the record has one, else on "
                  "the metric named; † marks a number read second-hand (a reprint or a note, "
                  "`lorabench/report/paper_tables.py` names each source). *(older code)*: the code that determined "
                  "that row's numbers has changed since it ran (`lorabench/codeid.py`).\n")
        buf.write(experiment_tables(table))
    buf.write("\n## Paper columns not run here\n\n" + "".join(f"- {k}: {v}.\n" for k, v in NOT_RUN.items()))
    return buf.getvalue()


def to_csv(table: list[dict], cmps: list[Comparison]) -> str:
    flat = list(table)
    for c in cmps:
        if not c.complete:
            continue
        for setting in ("tuned", "shared"):
            for r in cmp_rows(c, setting):
                vs = r.vs_baseline
                flat.append({"experiment": c.experiment, "model": c.model, "task": c.task, "protocol": c.protocol,
                             "adapter": r.method, "setting": setting, "lr": r.lr, "edge": r.edge or "",
                             "n_seeds": r.test.n_seeds, f"metric:{c.primary}": r.test.mean,
                             "ci_lo": r.test.lo, "ci_hi": r.test.hi,
                             "delta": vs.mean if vs else None, "delta_lo": vs.lo if vs else None,
                             "delta_hi": vs.hi if vs else None, "p_holm": vs.p_adj if vs else None,
                             "noise": vs.sources if vs else None,
                             "valid": r.valid.mean if r.valid else None,
                             "test_loss": r.test_loss.mean if r.test_loss else None,
                             "speed": r.speed.mean if r.speed else None, "init_s": r.init_seconds,
                             "trainable_params": r.trainable, "scaling": r.scaling})
    keys = sorted({k for r in flat for k in r})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in flat:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else "" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def build(results_dir: str | Path = "results", plots: bool = True, readme_path: str | Path | None = None) -> Path:
    """Writes LEADERBOARD.md, the CSV, the plots and (with `readme_path`) README's result tables."""
    results_dir = Path(results_dir)
    records = results.load_all(results_dir)
    runs = latest(records)
    table, cmps, claims = rows(runs), comparisons(runs), claims_mod.load()
    (results_dir / "LEADERBOARD.md").write_text(markdown(table, cmps, claims, len(records)))
    (results_dir / "leaderboard.csv").write_text(to_csv(table, cmps))
    readme.update(Path(readme_path) if readme_path else None, readme_tables(cmps, claims, runs))
    if plots:
        figures.curves([r for r in runs if not is_comparison(r)], results_dir / "plots")
        for c in cmps:
            if c.complete:
                figures.comparison_plots(c, results_dir / "plots")
            else:   # no figure of an incomplete grid outlives it
                for old in (results_dir / "plots").glob(f"{figures.slug(c)}__*.png"):
                    old.unlink()
    return results_dir / "LEADERBOARD.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--readme", default=None, help="also write README's result tables (between its markers)")
    args = ap.parse_args()
    print(build(args.results, plots=not args.no_plots, readme_path=args.readme))


if __name__ == "__main__":
    main()
