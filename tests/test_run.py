"""The whole flow on a tiny random Llama: record contents, reproducibility, skip/rerun, resume."""
import json

import pytest
import torch

from lorabench.run import run
from lorabench.train import Interrupted


def test_run_writes_a_complete_record(fast_cfg, tmp_path):
    rec = run(fast_cfg("eval_base=true"))
    path = next((tmp_path / "results" / "runs").rglob("*.json"))
    on_disk = json.loads(path.read_text())
    assert on_disk["run_id"] == path.stem == rec["run_id"]
    for key in ("config_hash", "provenance", "config", "seed", "costs", "params", "tokens", "metrics", "curve",
                "init_report", "protocol", "metrics_base", "data"):
        assert key in on_disk, key
    assert on_disk["metrics"]["protocol"] == "lora_ga" and on_disk["metrics"]["n"] == 4
    assert 0.0 <= on_disk["metrics"]["values"]["accuracy"] <= 1.0
    assert len(on_disk["curve"]) == 4 and on_disk["tokens"] > 0
    assert "eval_loss" in on_disk["curve"][-1]
    assert on_disk["params"]["trainable"] < on_disk["params"]["total"]
    assert on_disk["provenance"]["packages"]["torch"]
    # validation scored like the test (the split a learning rate is chosen on), and held-out losses
    assert on_disk["metrics_valid"]["n"] == 4 and on_disk["metrics_valid"]["protocol"] == "lora_ga"
    assert on_disk["loss"]["valid"] == pytest.approx(on_disk["curve"][-1]["eval_loss"])
    assert on_disk["loss"]["test"] > 0 and on_disk["loss_base"]["test"] > 0 and "samples" not in on_disk["metrics_valid"]
    assert path.parent.parts[-3:] == ("tiny-llama", "gsm8k_mini", "lora")
    # per-item results that reproduce the metric, with the item set's digest; the code that made the numbers
    for split, m, base in (("test", on_disk["metrics"], on_disk["items_base"]), ("valid", on_disk["metrics_valid"], None)):
        it = on_disk["items"][split]
        assert it["n"] == m["n"] == len(it["scores"]) and len(it["digest"]) == 16
        assert sum(c == "1" for c in it["scores"]) / it["n"] == pytest.approx(m["values"]["accuracy"])
        if base:
            assert base["digest"] == it["digest"]     # the base model scored the same items
    from lorabench import codeid
    assert set(on_disk["code"]["parts"]) == {"init", "train", "task", "eval", "base"}
    assert "lorabench/adapters/weight_inits.py" in on_disk["code"]["files"] and codeid.stale_parts(on_disk) == []


def test_a_reused_init_gives_the_same_run(fast_cfg):
    """A sweep computes a data-driven init once and reuses it for its other learning rates (init_cache);
    the run is the same as with an init computed afresh."""
    from lorabench import init_cache

    lora_ga = ("adapter=lora_ga", "adapter.init_batches=2", "adapter.init_batch_size=2")
    init_cache.clear()
    first = run(fast_cfg(*lora_ga, "trainer.lr=1e-3"), reuse_init=True)
    reused = run(fast_cfg(*lora_ga, "trainer.lr=3e-3"), reuse_init=True)
    assert not first["init_report"]["reused"] and reused["init_report"]["reused"]
    init_cache.clear()
    fresh = run(fast_cfg(*lora_ga, "trainer.lr=3e-3", "rerun=true"), reuse_init=True)
    assert not fresh["init_report"]["reused"]
    assert [p["loss"] for p in fresh["curve"]] == [p["loss"] for p in reused["curve"]]
    assert fresh["metrics"]["values"] == reused["metrics"]["values"] and fresh["loss"] == reused["loss"]


def test_same_config_same_loss_curve(fast_cfg):
    a = run(fast_cfg())
    b = run(fast_cfg("rerun=true"))
    assert b["run_id"] == a["run_id"] + ".r2"
    assert [p["loss"] for p in a["curve"]] == [p["loss"] for p in b["curve"]]
    c = run(fast_cfg("seed=1"))
    assert [p["loss"] for p in a["curve"]] != [p["loss"] for p in c["curve"]]


def test_identical_config_is_skipped_not_overwritten(fast_cfg, tmp_path):
    first = run(fast_cfg())
    path = next((tmp_path / "results" / "runs").rglob("*.json"))
    before = path.read_bytes()
    again = run(fast_cfg())
    assert again["run_id"] == first["run_id"] and path.read_bytes() == before
    assert len(list((tmp_path / "results" / "runs").rglob("*.json"))) == 1


@pytest.mark.parametrize("adapter", ["lora", *(pytest.param(a, marks=pytest.mark.slow) for a in
                                                 ("lora_pro", "allora", "lora_sb", "loldu", "kasa"))])
def test_resume_equals_uninterrupted(fast_cfg, tmp_path, adapter):
    # the newer methods: their optimizer states (LoRA-Pro, ALLoRA), three-factor modules and KaSA's regularizer
    overrides = ["trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.eval_every=0", f"adapter={adapter}"]
    full = run(fast_cfg(*overrides, "paths.output_dir=out_a", "paths.results_dir=res_a"))
    with pytest.raises(Interrupted):
        run(fast_cfg(*overrides, "paths.output_dir=out_b", "paths.results_dir=res_b"), stop_at=3)
    resumed = run(fast_cfg(*overrides, "paths.output_dir=out_b", "paths.results_dir=res_b"))
    assert resumed["resumed_from"] == 2
    assert [p["loss"] for p in resumed["curve"]] == [p["loss"] for p in full["curve"]]
    a = sorted((tmp_path / "out_a").rglob("adapter/adapter_model.safetensors"))[0]
    b = sorted((tmp_path / "out_b").rglob("adapter/adapter_model.safetensors"))[0]
    from safetensors.torch import load_file
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_saved_adapter_reloads(fast_cfg, tmp_path):
    from peft import PeftModel

    from conftest import compose
    from lorabench import models
    rec = run(fast_cfg())
    cfg = compose("model=tiny_llama")
    base = models.load_model(cfg.model)
    model = PeftModel.from_pretrained(base, rec["adapter_path"])
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_response_only_logits_give_the_full_loss_and_gradient(smol, monkeypatch):
    """loss_sum asks the LM head for the response positions only (logits_to_keep): same loss, same gradient."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lorabench import train as train_mod

    model = get_peft_model(smol.load(), LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    batch = smol.batches[0]
    assert train_mod.keeps_logits(model)

    def loss_and_grads():
        s, n = train_mod.loss_sum(model, batch)
        model.zero_grad()
        (s / n).backward()
        return s.item(), n, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    kept = loss_and_grads()
    monkeypatch.setattr(train_mod, "keeps_logits", lambda m: False)
    full = loss_and_grads()
    assert kept[1] == full[1] and kept[0] == pytest.approx(full[0], rel=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(kept[2], full[2]))


def test_a_resumed_run_logs_every_step_to_its_tracker(fast_cfg, tmp_path, monkeypatch):
    """wandb's service dies with a SIGTERM and loses what it had not written, so the tracker of a resumed
    run gets the checkpoint's history again: its one run holds every step (issue 23: it started at step 7)."""
    from lorabench import run as run_module
    from lorabench.cluster.tracking import NoTracker

    class Recorder(NoTracker):
        def __init__(self, *args):
            self.steps = []
            made.append(self)

        def log(self, values, step):
            self.steps.append(step)
    made = []
    monkeypatch.setattr(run_module, "make_tracker", Recorder)
    overrides = ["trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.eval_every=0"]
    with pytest.raises(Interrupted):
        run(fast_cfg(*overrides), stop_at=3)
    run(fast_cfg(*overrides))
    assert made[0].steps == [1, 2, 3] and made[1].steps == [1, 2, 3, 4, 5, 6]


def test_the_preemption_signal_marks_the_wandb_run_as_preempting():
    from lorabench.cluster import preemption, tracking

    class Run:
        marked = 0

        def mark_preempting(self):
            Run.marked += 1

        def finish(self, exit_code=0):
            pass
    t = tracking.WandbTracker.__new__(tracking.WandbTracker)
    t.run = Run()
    preemption.on_preempt(t.preempting)
    try:
        preemption._pending.append(preemption.signal.SIGUSR2)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(preemption.signal, "getsignal", lambda s: (lambda *a: None))
            preemption._act()
    finally:
        t.finish()
    assert Run.marked == 1 and t.preempting not in preemption._listeners
