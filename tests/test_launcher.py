"""The sweep launchers' own logic, without a cluster: local members get GPUs of their own, and a tracker
that dies (wandb's service on a SLURM SIGTERM) never fails the run."""
import json

from lorabench.cluster import launcher, tracking


class FakeJob:
    def __init__(self, gpus):
        self.gpus = gpus

    def wait(self):
        pass


class FakeExecutor:
    def __init__(self):
        self.params = {}

    def update_parameters(self, **kw):
        self.params.update(kw)


def test_local_members_run_in_waves_each_on_its_own_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 5)
    lau = launcher.LocalLauncher.__new__(launcher.LocalLauncher)
    lau.params = {"gpus_per_node": 2}
    monkeypatch.setattr(lau, "_executor", FakeExecutor, raising=False)
    monkeypatch.setattr(lau, "_submit", lambda ex, members: [FakeJob(ex.params["visible_gpus"]) for _ in members],
                        raising=False)
    jobs = lau._run([(i, [], None) for i in range(5)])
    # 5 GPUs, 2 per member: slots (0,1) and (2,3); five members in three waves
    assert [j.gpus for j in jobs] == [(0, 1), (2, 3), (0, 1), (2, 3), (0, 1)]


class DyingRun:
    def __init__(self):
        self.summary, self.calls = {}, []

    def log(self, values, step):
        self.calls.append(step)
        raise ConnectionResetError("wandb service is gone")

    def finish(self, exit_code=0):
        raise BrokenPipeError("wandb service is gone")


def test_a_dead_tracker_stops_tracking_not_the_run(capsys):
    t = tracking.WandbTracker.__new__(tracking.WandbTracker)
    t.run = run = DyingRun()
    t.log({"loss": 1.0}, 1)
    t.log({"loss": 0.9}, 2)                 # no second attempt: tracking stopped after the first error
    t.summary({"acc": 0.5})
    t.finish(ok=True)
    assert run.calls == [1]
    assert "tracking stops, the run goes on" in capsys.readouterr().err


def test_wandb_id_is_the_run_id_in_wandb_characters():
    assert tracking.wandb_id("abc123def456-s0.r2") == "abc123def456-s0_r2"


# The sweep parent's bookkeeping, with its members faked: a job that reports nothing, as a cancelled one.
class Vanished:
    def __init__(self, job_id, state="CANCELLED", interrupt=False):
        self.job_id, self.state, self.interrupt = job_id, state, interrupt

    def results(self):
        if self.interrupt:
            raise KeyboardInterrupt
        raise RuntimeError(f"job {self.job_id} has not produced any output (state: {self.state})")

    def done(self):
        return False


def parent(tmp_path, monkeypatch, jobs, cls=launcher.SlurmLauncher):
    """A sweep parent over members seed=0..n-1 of the fast config, whose jobs are `jobs`."""
    from omegaconf import OmegaConf

    from conftest import FAST, compose

    lau = cls.__new__(cls)
    lau.params, lau.config = {}, OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    monkeypatch.setattr(launcher, "_member_config",
                        lambda self, overrides: (compose(*FAST, *overrides, root=tmp_path), {}))
    monkeypatch.setattr(lau, "_run", lambda members: jobs[:len(members)], raising=False)
    return lau


def summary(tmp_path):
    return (tmp_path / "sweep" / "summary.txt").read_text()


def test_a_new_failure_gets_its_own_record_not_an_older_one(tmp_path, monkeypatch):
    from conftest import FAST, compose
    from lorabench.run import record_failure

    older = record_failure(compose(*FAST, "seed=0", root=tmp_path), {}, RuntimeError("job 31_1 (FAILED)"), world=1)
    lau = parent(tmp_path, monkeypatch, [Vanished("33")])
    lau.launch([["seed=0"]], 0)
    failed = [p for p in (tmp_path / "results").rglob("*.failed*.json") if p != older]
    assert len(failed) == 1 and "job 33 (CANCELLED)" in json.loads(failed[0].read_text())["error"]
    assert f"failed #0: {failed[0]}" in summary(tmp_path) and str(older) not in summary(tmp_path)


def test_the_parent_survives_a_full_disk_and_still_reports(tmp_path, monkeypatch, capsys):
    import errno

    from lorabench import run as run_module

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(run_module, "record_failure", full)
    lau = parent(tmp_path, monkeypatch, [Vanished("40"), Vanished("41")])
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "summary.txt").mkdir()        # and the summary file cannot be written either
    lau.launch([["seed=0"], ["seed=1"]], 0)            # returns: the parent does not die of its bookkeeping
    err = capsys.readouterr().err
    assert "0 done, 0 skipped (already done), 2 failed" in err
    assert "job 40 left no record" in err and "No space left on device" in err and "job 41" in err
    assert "could not write" in err and "summary.txt" in err


def test_ctrl_c_writes_the_summary_and_names_the_running_jobs(tmp_path, monkeypatch):
    import pytest

    lau = parent(tmp_path, monkeypatch, [Vanished("50", interrupt=True), Vanished("51")])
    with pytest.raises(KeyboardInterrupt):
        lau.launch([["seed=0"], ["seed=1"]], 0)
    text = summary(tmp_path)
    assert "interrupted (Ctrl-C): 2 job(s) still running or queued: 50 51" in text
    assert "cancel them with: scancel 50 51" in text
