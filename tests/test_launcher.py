"""The sweep launchers' own logic, without a cluster: local members get GPUs of their own, and a tracker
that dies (wandb's service on a SLURM SIGTERM) never fails the run."""
from lorabench import launcher, tracking


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
