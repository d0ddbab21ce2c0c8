"""Grids that contain each method's optimum: which learning rates a comparison still has to run.

When a method's validation-chosen rate is the lowest or highest it ran, its optimum may lie beyond the grid.
The next rate beyond that edge, on the same 1-3-10 log grid (3e-4 -> 1e-4, 1e-2 -> 3e-2), is run for every
seed; this repeats until the choice is interior (a rate where training diverges is never chosen, so
divergence ends it too) or MAX_STEPS rates beyond the design were run on that side, after which the cell
stays marked as an edge choice. A pure function of the records (validation numbers only):

    python -m lorabench.report.extend compare/minilm_sst2     # one `adapter=... trainer.lr=...` line per run
"""
from __future__ import annotations

import argparse
import math

from lorabench import results
from lorabench.report.grid import Comparison, choose_lr, comparisons, latest

MAX_STEPS = 3
MANTISSAS = (1.0, 3.0)


def next_rate(lr: float, up: bool) -> float:
    """The neighbour of `lr` on the 1-3-10 grid, above or below it."""
    e = math.floor(math.log10(lr))
    grid = sorted(m * 10.0 ** k for k in range(e - 2, e + 3) for m in MANTISSAS)
    pick = min(x for x in grid if x > lr * (1 + 1e-9)) if up else max(x for x in grid if x < lr * (1 - 1e-9))
    return float(f"{pick:.3g}")


def needed(c: Comparison) -> list[tuple[str, float]]:
    """(method, learning rate) runs the comparison needs for its grid to contain each optimum. Methods with
    runs still missing wait until they are complete (the choice is made on a complete grid)."""
    designed = set((c.design or {}).get("lrs") or [])
    incomplete = {m for m, _, _ in c.missing}
    out = []
    for method, cells in c.methods.items():
        if method in incomplete or len(cells) < 2:
            continue
        side = c.edge(method)
        if side is None:
            continue
        beyond = [lr for lr in cells if lr not in designed and
                  (lr < min(designed, default=lr) if side == "low" else lr > max(designed, default=lr))]
        if len(beyond) >= MAX_STEPS:
            continue
        out.append((method, next_rate(choose_lr(cells), up=side == "high")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment")
    ap.add_argument("--results", default="results")
    args = ap.parse_args()
    for c in comparisons(latest(results.load_all(args.results))):
        if c.experiment == args.experiment:
            for method, lr in needed(c):
                print(f"adapter={method} trainer.lr={lr:g}")


if __name__ == "__main__":
    main()
