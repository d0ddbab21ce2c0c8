"""README's result tables are written by `make leaderboard`, between two markers, so no number in README is
copied by hand: `update` replaces what stands between them and nothing else."""
from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- results:begin (written by `make leaderboard` from results/runs; do not edit) -->"
END = "<!-- results:end -->"


def update(path: Path | None, text: str) -> bool:
    """Put `text` between README's markers; False (and README untouched) without a path or markers."""
    if path is None or not path.is_file():
        return False
    old = path.read_text()
    if BEGIN not in old or END not in old:
        raise ValueError(f"{path} has no result markers: add the lines\n{BEGIN}\n{END}\nwhere the tables go")
    head, rest = old.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{text.strip()}\n{END}{tail}"
    if new != old:
        path.write_text(new)
    return True
