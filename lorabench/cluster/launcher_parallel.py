"""`hydra/launcher=parallel`: a sweep's members on several worker processes of this machine, for CPU sweeps.

On a small CPU one process rarely keeps every core busy: a LoRA step of SmolLM2-135M (8 x 24 tokens) runs at
1.44 s on 2 threads, while two single-threaded processes run one each in ~1.85 s, 1.56x the throughput
(scripts and figures in the README's comparison section). So each worker runs single-threaded members
(`threads=1` in the member config, which is part of the run's identity: the thread count changes float
summation order) and the workers share the cores.

Members whose overrides differ only in `trainer.*` (the learning rate, say) share an adapter init: they form
one group and run one after another in the same worker, so the init is computed once per group
(lorabench/init_cache.py), as in the basic launcher. Groups go to whichever worker is free (joblib's loky
backend, dynamic dispatch). A member that raises is recorded as failed by lorabench.run.main and the others go
on; a worker process killed outright (out of memory) stops the sweep, and running it again continues from
the records.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import open_dict

log = logging.getLogger(__name__)


class ParallelLauncher(Launcher):
    def __init__(self, workers: int = 2) -> None:
        self.workers = int(workers)
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides, initial_job_idx):
        from joblib import Parallel, delayed

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        groups: dict[tuple, list] = {}
        for k, overrides in enumerate(job_overrides):
            groups.setdefault(_init_overrides(overrides), []).append((initial_job_idx + k, list(overrides)))
        log.info(f"Launching {len(job_overrides)} jobs in {len(groups)} init groups on {self.workers} workers")
        state = Singleton.get_state()
        done = Parallel(n_jobs=self.workers, backend="loky", batch_size=1)(
            delayed(_run_group)(self.hydra_context, self.task_function, self.config, group, state)
            for group in groups.values())
        returns = dict(r for rets in done for r in rets)
        return [returns[initial_job_idx + k] for k in range(len(job_overrides))]


def _init_overrides(overrides) -> tuple:
    """A member's overrides minus the trainer's: the init never reads `trainer.*` (lorabench/init_cache.key),
    so members that differ only there share one. Grouping from the overrides, not composed configs, keeps
    the parent from composing every member a second time (about 0.4 s each); the workers' init cache still
    decides, per member, whether an init is reused."""
    return tuple(o for o in overrides if not o.lstrip("+~").startswith("trainer."))


def _run_group(hydra_context, task_function, config, group, state):
    """One worker: the group's members in order, in this process (as Hydra's basic launcher runs them)."""
    Singleton.set_state(state)
    setup_globals()
    out = []
    for idx, overrides in group:
        sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        out.append((idx, run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                                 job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")))
    return out
