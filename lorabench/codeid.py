"""Which code determines a run's numbers: a digest per part (the init, training, the task and its scoring,
the base model's loading), each over the lorabench source files that part imports.

A record carries these digests; a record whose digests differ from the code checked out now is *stale*: it
is not "done" (`results.existing` skips it, so `make compare` reruns exactly those cells) and the
leaderboard leaves it out of every comparison, naming it.

What counts: the part's entry module and every lorabench module it imports, transitively (read from the
source, `ast`), except
- the registries (REGISTRIES: adapters/__init__.py, tasks/__init__.py import every init and task family);
  following them would make adding one init invalidate every other init's records, and
- IGNORED modules, which say where things go, how a run is shown or spread over processes, or how it is
  resumed, not what it computes: the same rule as `results.VOLATILE` for config keys. That they change no
  number is tested elsewhere (resume equals an uninterrupted run, records equal across layouts).
Files are hashed as they are on disk (uncommitted edits count), so a digest never claims code it did not run.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
IGNORED = frozenset({
    "lorabench.results", "lorabench.checkpoint", "lorabench.costs", "lorabench.quiet", "lorabench.errors",
    "lorabench.hub", "lorabench.assets", "lorabench.config", "lorabench.init_cache", "lorabench.codeid",
    "lorabench.paper_settings", "lorabench.report",
    "lorabench.cluster"})   # launchers, preemption, process groups, tracking, run claims
TRAIN = ("lorabench.train", "lorabench.data")
EVAL = ("lorabench.scoring",)
BASE = ("lorabench.models", "lorabench.quantize")
# Packages whose __init__ registers every member (each init, each task family): not followed.
REGISTRIES = frozenset({"lorabench", "lorabench.adapters", "lorabench.tasks"})


def _path(module: str) -> Path | None:
    rel = Path(*module.split(".")[1:])
    if not rel.parts:
        return PACKAGE / "__init__.py"
    for p in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if p.is_file():
            return p
    return None


def _ignored(module: str) -> bool:
    return any(module == i or module.startswith(i + ".") for i in IGNORED)


@lru_cache(maxsize=None)
def _imports(module: str) -> tuple[str, ...]:
    """The lorabench modules `module` imports (any depth in the file: functions import lazily too)."""
    path = _path(module)
    if path is None:
        return ()
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative import
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)   # `from lorabench import x`: x may be a module
    return tuple(sorted(m for m in found if m.startswith("lorabench") and _path(m) is not None))


def closure(*entries: str) -> list[Path]:
    """The source files the entry modules run: themselves and their lorabench imports, less __init__ files
    and IGNORED modules."""
    seen, todo, files = set(), list(entries), set()
    while todo:
        m = todo.pop()
        if m in seen or _ignored(m):
            continue
        seen.add(m)
        path = _path(m)
        if path is None:
            continue
        if m in REGISTRIES and m not in entries:
            continue   # a registry: neither its file nor everything it registers
        files.add(path)
        todo.extend(_imports(m))
    return sorted(files)


def file_digest(path: Path) -> str:
    st = path.stat()   # a sweep asks for every member's digest: read each file once while it is unchanged
    return _read_digest(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=None)
def _read_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(PACKAGE.parent)}\0{file_digest(f)}\n".encode())
    return h.hexdigest()[:16]


def parts(init: str, task_family: str) -> dict[str, list[Path]]:
    """part -> its files, for a run of `init` on a task of `task_family`."""
    from lorabench import adapters, tasks

    init_module = adapters.REGISTRY[init].fn.__module__
    return {"init": closure(init_module), "train": closure(*TRAIN),
            "task": closure(tasks.FAMILIES[task_family]), "eval": closure(*EVAL), "base": closure(*BASE)}


def code_id(config: dict) -> dict:
    """{'parts': {part: digest}, 'files': {relative path: sha256[:12]}} for a run of `config`."""
    ps = parts(config["adapter"]["init"], config["task"]["family"])
    files = {str(f.relative_to(PACKAGE.parent)): file_digest(f)[:12] for fs in ps.values() for f in fs}
    return {"parts": {k: _digest(v) for k, v in ps.items()}, "files": dict(sorted(files.items()))}


def stale_parts(record: dict) -> list[str]:
    """The parts of `record` whose code changed since it ran (every part for a record written before
    records carried a digest); [] for a current record."""
    have = (record.get("code") or {}).get("parts")
    if not have:
        return ["(no code digest)"]
    try:
        now = code_id(record["config"])["parts"]
    except KeyError:   # an init or task family this code no longer has
        return ["(init or task no longer exists)"]
    return sorted(p for p in now if have.get(p) != now[p])
