"""Hydra launchers for sweeps that survive a cluster: hydra-submitit-launcher's SLURM and local launchers, with

- finished members skipped before they are submitted (their record exists), so they never queue for a GPU;
- a member that dies without writing a record (cancelled, killed, out of memory, timed out for good) gets
  a `.failed` record written by the sweep's parent, which never dies of one member's failure; a failure
  record from an earlier sweep of the same run id never stands in for this one's;
- one sweep directory for all members (`${sweep_stamp:}`, lorabench/config.py);
- a summary at the end: members done, skipped, failed, and where each failure record is; written also when
  the parent's own bookkeeping fails (a full disk: stderr says what could not be written) or when it is
  interrupted (Ctrl-C: the summary names the jobs still running and the command that cancels them);
- on one machine without SLURM (`hydra/launcher=slurm_local`), members run in parallel, each on its own GPUs.

Requeue on preemption and timeout is submitit's (the launcher is checkpointable; `max_num_timeout` in the
launcher config); the training loop writes a checkpoint when the signal arrives (lorabench/cluster/preemption.py).
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


def _success(cfg, world: int) -> Path | None:
    from lorabench import results
    from lorabench.config import to_container

    return results.existing(Path(cfg.paths.root) / cfg.paths.results_dir, to_container(cfg), world)


def _failures(cfg, world: int) -> set[Path]:
    """The failure records of this member's run id now: those written before its submission are an earlier
    sweep's, never the report of this one's failure."""
    from lorabench import results
    from lorabench.config import to_container

    config = to_container(cfg)
    folder = results.run_dir(Path(cfg.paths.root) / cfg.paths.results_dir, config)
    return set(folder.glob(f"{results.base_id(config, world)}.failed*.json"))


class _Survives:
    """The launch() shared by both executors; the rest is hydra-submitit-launcher's."""

    def __call__(self, *args, **kwargs):
        """One member, in its job's process. Hydra's run_job turns an exception into a FAILED return, which
        submitit reports as success: a member whose time-outs were used up (run.main records it and re-raises
        submitit's UncompletedJobError) showed COMPLETED in sacct. That error goes on up, so the job fails."""
        ret = super().__call__(*args, **kwargs)
        if ret.status == JobStatus.FAILED and type(ret._return_value).__name__ == "UncompletedJobError":
            raise ret._return_value
        return ret

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
        """Skip the done, submit the rest, and account for every member; whatever goes wrong in this
        bookkeeping (a full disk included) is reported for that member and the others go on, and the summary
        is written even when the parent is interrupted (Ctrl-C: it names the jobs still running)."""
        sweep_dir = Path(self.config.hydra.sweep.dir)
        world = self._world()
        members, returns, summary = [], {}, {"done": [], "skipped": [], "failed": [], "running": []}
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            for k, overrides in enumerate(job_overrides):
                idx = initial_job_idx + k
                returns[idx] = _return(overrides, None)
                cfg, choices = _member_config(self, overrides)
                found = _success(cfg, world)
                if found is not None and not cfg.rerun:
                    summary["skipped"].append((idx, str(found)))
                    continue
                members.append((idx, overrides, (cfg, choices, _failures(cfg, world))))
            log.info(f"sweep {sweep_dir}: {len(members)} to run, {len(summary['skipped'])} already done")
            jobs = self._run(members)
            for n, ((idx, overrides, (cfg, choices, before)), job) in enumerate(zip(members, jobs)):
                try:
                    value, why = _outcome(job)
                except KeyboardInterrupt:
                    summary["running"] = [j.job_id for j in jobs[n:] if not _finished(j)]
                    summary["cancel"] = self._CANCEL
                    raise
                returns[idx] = _return(overrides, value)
                kind, where = _account(cfg, choices, world, before, job, why)
                summary[kind].append((idx, where))
        except KeyboardInterrupt:
            summary["interrupted"] = True
            _report(sweep_dir, summary)
            raise
        except Exception as e:   # the parent's own failure: still say what is known
            summary["error"] = f"{type(e).__name__}: {e}"
            _report(sweep_dir, summary)
            raise
        _report(sweep_dir, summary)
        return [returns[initial_job_idx + k] for k in range(len(job_overrides))]

    def _run(self, members):
        return self._submit(self._executor(), members)


def _outcome(job):
    """(the member's return value, why it has none): waits for the job."""
    try:
        ret = job.results()[0]
        if ret.status == JobStatus.COMPLETED:
            return ret.return_value, None
        return None, f"ended without a record ({ret.status})"
    except KeyboardInterrupt:
        raise
    except Exception as e:   # the member died without reporting: cancelled, killed, timed out for good
        return None, e


def _finished(job) -> bool:
    try:
        return bool(job.done())
    except Exception:
        return False


def _account(cfg, choices, world, before, job, why) -> tuple[str, str]:
    """("done" or "failed", the member's record). A failure that left no record of its own (one from before
    the submission does not count) gets one; if even that cannot be written (a full disk), the summary says
    so in place of a path."""
    try:
        found = _success(cfg, world)
        if found is not None:
            return "done", str(found)
        new = sorted(_failures(cfg, world) - before, key=lambda p: p.stat().st_mtime)
        if new:
            return "failed", str(new[-1])
        from lorabench.run import record_failure

        state = getattr(job, "state", "?")
        return "failed", str(record_failure(cfg, choices, RuntimeError(f"job {job.job_id} ({state}): {why}"),
                                            world=world))
    except Exception as e:
        return "failed", (f"job {getattr(job, 'job_id', '?')} left no record ({why}) and writing one failed: "
                          f"{type(e).__name__}: {e}")


def _return(overrides, value) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


def _report(sweep_dir: Path, summary: dict) -> None:
    """The summary on stderr and in <sweep>/summary.txt; if the file cannot be written, stderr says why."""
    lines = [f"sweep {sweep_dir}: {len(summary['done'])} done, {len(summary['skipped'])} skipped (already done), "
             f"{len(summary['failed'])} failed"]
    lines += [f"  failed #{i}: {path}" for i, path in sorted(summary["failed"])]
    if summary.get("error"):
        lines.append(f"  the sweep's parent stopped: {summary['error']}")
    if summary.get("interrupted"):
        running = summary.get("running") or []
        lines.append("  interrupted (Ctrl-C): " + (
            f"{len(running)} job(s) still running or queued: {' '.join(map(str, running))}; "
            f"cancel them with: {summary.get('cancel', 'scancel')} {' '.join(map(str, running))}" if running
            else "no job left running"))
    text = "\n".join(lines)
    print(f"[lorabench] {text}", file=sys.stderr, flush=True)
    try:
        (sweep_dir / "summary.txt").write_text(text + "\n")
    except OSError as e:
        print(f"[lorabench] could not write {sweep_dir / 'summary.txt'}: {type(e).__name__}: {e} "
              f"(the summary above is the only copy)", file=sys.stderr, flush=True)


class SlurmLauncher(_Survives, base.SlurmLauncher):
    _CANCEL = "scancel"


class LocalLauncher(_Survives, base.LocalLauncher):
    """submitit's local executor gives every job the same GPUs; this one runs as many members at a time as
    the machine's GPUs allow (`gpus_per_node` each) and gives each its own."""
    _CANCEL = "kill"   # submitit's local job ids are process ids

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
