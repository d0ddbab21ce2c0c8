"""The leaderboard's figures: training-loss curves of plain experiments, and per comparison the learning-rate
sensitivity, the mean training loss with a band over seeds, and init cost against gain. Deterministic bytes
(no timestamps in the PNG metadata)."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from lorabench.report import stats
from lorabench.report.grid import Comparison, rows


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    _plt().close(fig)
    return path


def slug(c: Comparison) -> str:
    return f"{c.experiment.replace('/', '-')}__{c.model}__{c.task}"


def sensitivity(c: Comparison, out_dir: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, split in zip(axes, ("valid", "test")):
        for method, cells in c.methods.items():
            lrs = sorted(cells)
            vals = [list((cells[lr].valid() if split == "valid" else cells[lr].test()).values()) for lr in lrs]
            keep = [(lr, v) for lr, v in zip(lrs, vals) if v]
            if keep:
                ax.errorbar([lr for lr, _ in keep], [statistics.fmean(v) for _, v in keep],
                            yerr=[statistics.stdev(v) if len(v) > 1 else 0 for _, v in keep], marker="o", ms=3,
                            lw=1, capsize=2, label=method)
        ax.set(xscale="log", xlabel="learning rate", title=f"{split} {c.primary} (mean ± std over seeds)")
    axes[0].set_ylabel(f"{c.primary} (%)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{c.experiment}: {c.model} · {c.task}")
    return _save(fig, out_dir / f"{slug(c)}__sensitivity.png")


def loss_bands(c: Comparison, setting: str, out_dir: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, cell in c.chosen(setting).items():
        curves = list(cell.curves().values())
        n = min(len(cv) for cv in curves)
        steps = [curves[0][i]["step"] for i in range(n)]
        sm = [stats.smoothed([cv[i]["loss"] for i in range(n)]) for cv in curves]
        mean = [statistics.fmean(s[i] for s in sm) for i in range(n)]
        ax.plot(steps, mean, lw=1, label=f"{method} (lr {cell.lr:g})")
        ax.fill_between(steps, [min(s[i] for s in sm) for i in range(n)], [max(s[i] for s in sm) for i in range(n)],
                        alpha=0.15)
    what = "tuned learning rates" if setting == "tuned" else f"shared lr {c.shared_lr:g}"
    ax.set(xlabel="optimizer step", ylabel=f"training loss (trailing mean of {stats.SMOOTH})")
    ax.set_title(f"{c.model} · {c.task}, {what} (band: min-max over seeds)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out_dir / f"{slug(c)}__loss_{setting}.png")


def cost_gain(c: Comparison, out_dir: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows(c, "tuned"):
        gain = r.vs_baseline.mean if r.vs_baseline else 0.0
        x = max(r.init_seconds, 1e-2)
        ax.scatter([x], [gain], s=12)
        ax.annotate(r.method, (x, gain), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xscale="log", xlabel="init time (s, log)", ylabel=f"Δ test {c.primary} vs {c.baseline} (pts)",
           title=f"{c.model} · {c.task}: init cost vs gain (tuned)")
    return _save(fig, out_dir / f"{slug(c)}__cost_gain.png")


def comparison_plots(c: Comparison, out_dir: Path) -> list[Path]:
    return [sensitivity(c, out_dir), loss_bands(c, "tuned", out_dir), cost_gain(c, out_dir)]


def curves(records: list[dict], out_dir: Path) -> list[Path]:
    """Every run's training loss, one figure per model and task (experiments that are not comparisons)."""
    plt = _plt()
    groups = defaultdict(list)
    for r in records:
        if r.get("curve"):
            groups[(r["model"], r["task"])].append(r)
    written = []
    for (model, task), recs in sorted(groups.items()):
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in sorted(recs, key=lambda r: (r["adapter"], r["seed"], r["run_id"])):
            ax.plot([p["step"] for p in r["curve"]], [p["loss"] for p in r["curve"]], lw=1,
                    label=f"{r['adapter']} s{r['seed']}")
        ax.set(xlabel="optimizer step", ylabel="training loss (response tokens)", title=f"{model} · {task}")
        ax.legend(fontsize=7, ncol=2)
        written.append(_save(fig, out_dir / f"{model}__{task}.png"))
    return written
