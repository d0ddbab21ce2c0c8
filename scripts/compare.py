"""`make compare`: run each comparison's grid, then the rates beyond any edge choice until every optimum is
interior (lorabench/report/extend.py), then the base model's score (once), then the leaderboard and README's
tables. Finished runs are skipped through their records and stale ones rerun (lorabench/codeid.py), so an
interrupted call continues where it stopped and a call after a code change reruns exactly the affected cells.

    python scripts/compare.py compare/minilm_sst2 compare/smollm2_arith [--rounds 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(experiment: str, *overrides: str) -> None:
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", f"experiment={experiment}", "logger=none", *overrides]
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def extensions(experiment: str) -> list[list[str]]:
    out = subprocess.run([sys.executable, "-m", "lorabench.report.extend", experiment], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def batched(todo: list[list[str]]) -> list[list[str]]:
    """One sweep per extension rate, its methods comma-joined: the launcher's workers stay full and the sweep
    starts once, where one sweep per (method, rate) left a worker idle for every odd number of seeds."""
    by_rest: dict[tuple[str, ...], list[str]] = {}
    for overrides in todo:
        methods = [o.split("=", 1)[1] for o in overrides if o.startswith("adapter=")]
        rest = tuple(o for o in overrides if not o.startswith("adapter="))
        by_rest.setdefault(rest, []).extend(methods)
    return [[f"adapter={','.join(ms)}", *rest] for rest, ms in by_rest.items()]


def score_base(experiment: str) -> None:
    """Once per complete comparison: the base model's score, for the gain its design must show
    (lorabench/report/design_check.py). The baseline's first seed at the shared rate runs again with
    eval_base=true: a second record of the same run (training is deterministic), now carrying metrics_base."""
    from lorabench import results
    from lorabench.report.design_check import base_score
    from lorabench.report.grid import comparisons

    found = [c for c in comparisons(results.load_all(ROOT / "results")) if c.experiment == experiment]
    if not found or not found[0].complete or base_score(found[0])[0] is not None:
        return
    c = found[0]
    seed = min(c.design["seeds"]) if c.design and c.design["seeds"] else 0
    sweep(experiment, f"adapter={c.baseline}", f"seed={seed}", f"trainer.lr={c.shared_lr:g}", "eval_base=true",
          "rerun=true")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="+")
    ap.add_argument("--rounds", type=int, default=3, help="at most this many rounds of edge extensions")
    args = ap.parse_args()
    for experiment in args.experiments:
        sweep(experiment)
        for _ in range(args.rounds):
            todo = extensions(experiment)
            if not todo:
                break
            for overrides in batched(todo):
                sweep(experiment, *overrides)
        score_base(experiment)
    subprocess.run([sys.executable, "-m", "lorabench.report.leaderboard", "--readme", "README.md"], cwd=ROOT,
                   check=True)


if __name__ == "__main__":
    main()
