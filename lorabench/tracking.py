"""Experiment tracking: wandb (offline by default) or nothing. Only the main process logs."""
from __future__ import annotations

import os


class NoTracker:
    def log(self, values: dict, step: int) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def finish(self, ok: bool = True) -> None:
        pass


class WandbTracker(NoTracker):
    def __init__(self, cfg, run_id: str, out_dir: str, config: dict):
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        os.makedirs(out_dir, exist_ok=True)
        self.run = wandb.init(project=cfg.project, name=run_id, group=cfg.group, tags=list(cfg.tags),
                              mode=cfg.mode, dir=out_dir, config=config, reinit="finish_previous")

    def log(self, values, step):
        self.run.log(values, step=step)

    def summary(self, values):
        self.run.summary.update(values)

    def finish(self, ok=True):
        self.run.finish(exit_code=0 if ok else 1)


def make_tracker(cfg, run_id: str, out_dir: str, config: dict, is_main: bool):
    if cfg.name == "none" or not is_main:
        return NoTracker()
    if cfg.name == "wandb":
        return WandbTracker(cfg, run_id, out_dir, config)
    raise ValueError(f"logger.name={cfg.name!r}: use wandb or none")
