"""Experiment tracking: wandb (offline by default) or nothing. Only the main process logs.

One wandb run per record: its id is the run id, resumed when a requeued or killed run continues. Under SLURM
a SIGTERM (requeue, scancel, preemption) reaches wandb's service process too, which dies at once with what it
had not written (in the issue, steps 1-6 of an offline run), so the history is not trusted to survive: a
resumed run logs its checkpoint's curve again (train.py) before the next step, and the one wandb run of a
record holds every step; on the preemption signal the run is marked as preempting (preemption.on_preempt).
Tracking never fails a run: a dead logger must not turn a run that resumes and succeeds into a `.failed` record.
"""
from __future__ import annotations

import os
import sys

from lorabench.cluster import preemption


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
        self.run = wandb.init(project=cfg.project, name=run_id, id=wandb_id(run_id), resume="allow",
                              group=cfg.group, tags=list(cfg.tags), mode=cfg.mode, dir=out_dir, config=config,
                              reinit="finish_previous")
        preemption.on_preempt(self.preempting)

    def preempting(self):
        """The job is about to leave for a requeue: tell wandb (its run resumes, not a crash)."""
        self._safe("mark_preempting", lambda: self.run.mark_preempting())

    def _safe(self, what, fn, *args, **kwargs):
        if self.run is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:   # the run goes on without its logger
            print(f"[lorabench] wandb {what} failed ({type(e).__name__}: {e}); tracking stops, the run goes on",
                  file=sys.stderr, flush=True)
            self.run = None

    def log(self, values, step):
        self._safe("log", lambda: self.run.log(values, step=step))

    def summary(self, values):
        self._safe("summary", lambda: self.run.summary.update(values))

    def finish(self, ok=True):
        preemption.forget(self.preempting)
        self._safe("finish", lambda: self.run.finish(exit_code=0 if ok else 1))
        self.run = None


def wandb_id(run_id: str) -> str:
    """wandb run ids allow letters, digits, - and _: the run id with its dots replaced."""
    return run_id.replace(".", "_")


def make_tracker(cfg, run_id: str, out_dir: str, config: dict, is_main: bool):
    if cfg.name == "none" or not is_main:
        return NoTracker()
    if cfg.name == "wandb":
        return WandbTracker(cfg, run_id, out_dir, config)
    raise ValueError(f"logger.name={cfg.name!r}: use wandb or none")
