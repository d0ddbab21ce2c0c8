"""hydra/launcher=parallel: members on worker processes, those sharing an init in one worker; every record
equals the one the basic launcher writes for the same member, a raising member leaves a failed record, and
the thread count is part of a run's identity."""
import json

import pytest

from conftest import FAST, compose, run_cli
from lorabench import results
from lorabench.config import to_container, validate
from lorabench.errors import ConfigError

SWEEP = ["-m", *FAST, "threads=1", "trainer.max_steps=3", "adapter=lora,pissa", "trainer.lr=1e-3,3e-3"]


def records(root):
    return {(r["adapter"], r["config"]["trainer"]["lr"], r["status"]): r
            for r in (json.loads(p.read_text()) for p in (root / "results" / "runs").rglob("*.json"))}


def test_parallel_sweep_equals_the_sequential_one(tmp_path):
    par = run_cli(*SWEEP, "hydra/launcher=parallel", f"paths.root={tmp_path / 'par'}", timeout=600)
    assert par.returncode == 0, par.stderr[-3000:]
    assert "Launching 4 jobs in 2 init groups on 2 workers" in par.stderr + par.stdout
    seq = run_cli(*SWEEP, f"paths.root={tmp_path / 'seq'}", timeout=600)
    assert seq.returncode == 0, seq.stderr[-3000:]
    a, b = records(tmp_path / "par"), records(tmp_path / "seq")
    assert len(a) == 4 and a.keys() == b.keys()
    for k in a:
        assert a[k]["run_id"] == b[k]["run_id"]
        assert [p["loss"] for p in a[k]["curve"]] == [p["loss"] for p in b[k]["curve"]]
        assert a[k]["loss"] == b[k]["loss"] and a[k]["rank_checksums"] == b[k]["rank_checksums"]
    # the second rate of each init reused the first one's init, in the same worker
    assert sorted(r["costs"]["init_reused"] for r in a.values()) == [False, False, True, True]


def test_a_raising_member_leaves_a_failed_record_and_the_others_finish(tmp_path):
    p = run_cli("-m", *FAST, "threads=1", "trainer.max_steps=2", "adapter=lora", "adapter.r=100000,8",
                "hydra/launcher=parallel", f"paths.root={tmp_path}", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    statuses = sorted((k[0], r["config"]["adapter"]["r"], r["status"]) for k, r in records(tmp_path).items())
    assert statuses == [("lora", 8, "success"), ("lora", 100000, "failed")]


def test_threads_are_part_of_the_identity_and_checked():
    one, default = to_container(compose("threads=1")), to_container(compose())
    assert results.config_hash(one) != results.config_hash(default)
    del default["threads"]                                        # a record written before the key existed
    assert results.config_hash(default) == results.config_hash(to_container(compose()))
    with pytest.raises(ConfigError, match="threads=0"):
        validate(compose("threads=0"), check_shapes=False)
