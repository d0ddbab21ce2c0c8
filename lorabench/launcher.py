"""Hydra launchers for sweeps that survive a cluster: hydra-submitit-launcher's SLURM and local launchers, with

- finished members skipped before they are submitted (their record exists), so they never queue for a GPU;
- a member that dies without writing a record (cancelled, killed, out of memory, timed out for good) gets
  a `.failed` record written by the sweep's parent, which never dies of one member's failure;
- one sweep directory for all members (`${sweep_stamp:}`, lorabench/config.py);
- a summary at the end: members done, skipped, failed, and where each failure record is;
- on one machine without SLURM (`hydra/launcher=slurm_local`), members run in parallel, each on its own GPUs.

Requeue on preemption and timeout is submitit's (the launcher is checkpointable; `max_num_timeout` in the
launcher config); the training loop writes a checkpoint when the signal arrives (lorabench/preemption.py).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as base
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf, open_dict

import lorabench.config  # noqa: F401  the schema and resolvers, in the members' processes too

log = logging.getLogger(__name__)


def _member_config(launcher, overrides):
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _record(cfg, world: int) -> Path | None:
    from lorabench import results
    from lorabench.config import to_container

    config = to_container(cfg)
    folder = Path(cfg.paths.root) / cfg.paths.results_dir
    done = results.existing(folder, config, world)
    if done is not None:
        return done
    failed = sorted(results.run_dir(folder, config).glob(f"{results.base_id(config, world)}.failed*.json"),
                    key=lambda p: p.stat().st_mtime)
    return failed[-1] if failed else None


class _Survives:
    """The launch() shared by both executors; the rest is hydra-submitit-launcher's."""

    def _world(self) -> int:
        return int(self.params.get("nodes", 1)) * int(self.params.get("tasks_per_node", 1))

    def _executor(self):
        import submitit

        p = dict(self.params)
        folder = p.pop("submitit_folder")
        init = {f"{self._EXECUTOR}_max_num_timeout": p.pop("max_num_timeout")} if "max_num_timeout" in p else {}
        executor = submitit.AutoExecutor(folder=folder, cluster=self._EXECUTOR, **init)
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"{self._EXECUTOR}_{k}": v for k, v in p.items()})
        return executor

    def _submit(self, executor, members):
        args = [(list(o), "hydra.sweep.dir", i, f"job_id_for_{i}", Singleton.get_state()) for i, o, _ in members]
        return executor.map_array(self, *zip(*args)) if args else []

    def launch(self, job_overrides, initial_job_idx):
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        world = self._world()
        members, returns, summary = [], {}, {"done": [], "skipped": [], "failed": []}
        for k, overrides in enumerate(job_overrides):
            idx = initial_job_idx + k
            cfg, choices = _member_config(self, overrides)
            found = _record(cfg, world)
            if found is not None and not cfg.rerun and ".failed" not in found.name:
                summary["skipped"].append((idx, str(found)))
                returns[idx] = _return(overrides, None)
                continue
            members.append((idx, overrides, (cfg, choices)))
        log.info(f"sweep {sweep_dir}: {len(members)} to run, {len(summary['skipped'])} already done")
        jobs = self._run(members)
        for (idx, overrides, (cfg, choices)), job in zip(members, jobs):
            value, why = None, None
            try:
                ret = job.results()[0]
                if ret.status == JobStatus.COMPLETED:
                    value = ret.return_value
                else:
                    why = f"ended without a record ({ret.status})"
            except Exception as e:   # the member died without reporting: cancelled, killed, timed out for good
                why = e
            found = _record(cfg, world)
            if found is None:        # nothing says what happened: say it
                from lorabench.run import record_failure

                state = getattr(job, "state", "?")
                found = record_failure(cfg, choices, RuntimeError(f"job {job.job_id} ({state}): {why}"), world=world)
            (summary["failed"] if ".failed" in found.name else summary["done"]).append((idx, str(found)))
            returns[idx] = _return(overrides, value)
        _report(sweep_dir, summary)
        return [returns[initial_job_idx + k] for k in range(len(job_overrides))]

    def _run(self, members):
        return self._submit(self._executor(), members)


def _return(overrides, value) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


def _report(sweep_dir: Path, summary: dict) -> None:
    lines = [f"sweep {sweep_dir}: {len(summary['done'])} done, {len(summary['skipped'])} skipped (already done), "
             f"{len(summary['failed'])} failed"]
    lines += [f"  failed #{i}: {path}" for i, path in sorted(summary["failed"])]
    text = "\n".join(lines)
    print(f"[lorabench] {text}", file=sys.stderr, flush=True)
    (sweep_dir / "summary.txt").write_text(text + "\n")


class SlurmLauncher(_Survives, base.SlurmLauncher):
    pass


class LocalLauncher(_Survives, base.LocalLauncher):
    """submitit's local executor gives every job the same GPUs; this one runs as many members at a time as
    the machine's GPUs allow (`gpus_per_node` each) and gives each its own."""

    def _run(self, members):
        import torch

        gpus = list(range(torch.cuda.device_count()))
        per = int(self.params.get("gpus_per_node") or 0)
        if not per or len(gpus) < 2 * per:
            return self._submit(self._executor(), members)
        slots = [gpus[i:i + per] for i in range(0, len(gpus) - per + 1, per)]
        jobs = []
        for start in range(0, len(members), len(slots)):     # one wave: every slot busy, then the next
            wave = []
            for slot, member in zip(slots, members[start:start + len(slots)]):
                executor = self._executor()
                executor.update_parameters(visible_gpus=tuple(slot))
                wave += self._submit(executor, [member])
            for job in wave:
                job.wait()
            jobs += wave
        return jobs
