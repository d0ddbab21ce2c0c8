"""`make compare`: run each comparison's grid, then the rates beyond any edge choice until every optimum is
interior (lorabench/report/extend.py), then the leaderboard and README's tables. Finished runs are skipped
through their records and stale ones rerun (lorabench/codeid.py), so an interrupted call continues where it
stopped and a call after a code change reruns exactly the affected cells.

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
            for overrides in todo:
                sweep(experiment, *overrides)
    subprocess.run([sys.executable, "-m", "lorabench.report.leaderboard", "--readme", "README.md"], cwd=ROOT,
                   check=True)


if __name__ == "__main__":
    main()
