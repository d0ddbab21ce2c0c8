"""Records are written atomically, never overwritten, and never collide between processes."""
import json
import multiprocessing as mp

import pytest

from lorabench import codeid, results


def record(seed=0, status="success"):
    config = {"model": {"name": "m"}, "task": {"name": "t", "family": "glue"}, "adapter": {"name": "a", "init": "lora"},
              "seed": seed, "paths": {"root": "/somewhere"}}
    return {"status": status, "config": config, "metrics": {"values": {"accuracy": 0.5}}, "code": codeid.code_id(config)}


def test_hash_ignores_paths_and_logger():
    a, b = record()["config"], record()["config"]
    b["paths"] = {"root": "/elsewhere"}
    b["logger"] = {"name": "wandb"}
    assert results.config_hash(a) == results.config_hash(b)
    b["seed"] = 1
    assert results.config_hash(a) != results.config_hash(b)


def test_never_overwrites(tmp_path):
    p1 = results.write(tmp_path, record())
    before = p1.read_bytes()
    with pytest.raises(FileExistsError, match="rerun=true"):
        results.write(tmp_path, record())
    p2 = results.write(tmp_path, record(), rerun=True)
    assert p1.read_bytes() == before and p2.name.endswith(".r2.json")
    assert not list(tmp_path.rglob(".tmp-*"))          # no temp file left behind
    assert results.existing(tmp_path, record()["config"]) == p2    # the newest current record


def test_a_stale_record_is_not_done_and_does_not_block_its_rerun(tmp_path, monkeypatch):
    """A record of older code (codeid) is not done: the run goes again and writes the next id, no rerun=true."""
    old = record()
    old["code"] = {"parts": {**old["code"]["parts"], "init": "0" * 16}, "files": {}}
    p1 = results.write(tmp_path, old)
    assert results.existing(tmp_path, record()["config"]) is None
    p2 = results.write(tmp_path, record())
    assert p2.name.endswith(".r2.json") and results.existing(tmp_path, record()["config"]) == p2
    assert json.loads(p1.read_text())["code"]["parts"]["init"] == "0" * 16   # never edited


def test_failed_runs_do_not_block_a_retry(tmp_path):
    failed = results.write(tmp_path, record(status="failed"))
    assert ".failed" in failed.name and results.existing(tmp_path, record()["config"]) is None


def _write(args):
    root, i = args
    return str(results.write(root, record(), rerun=True))


def test_concurrent_writers_never_collide(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        paths = pool.map(_write, [(str(tmp_path), i) for i in range(12)])
    assert len(set(paths)) == 12
    for p in paths:
        json.loads(open(p).read())                       # every file complete
    assert {json.loads(open(p).read())["run_id"] for p in paths} == {p.split("/")[-1][:-5] for p in paths}


def test_identity_is_the_global_batch_not_how_it_is_split():
    def cfg(bs, acc):
        c = record()["config"]
        c["trainer"] = {"batch_size": bs, "grad_accum": acc, "lr": 1e-3}
        c["distributed"] = {"name": "zero3"}
        return c

    one = results.config_hash(cfg(16, 1), world=1)
    assert one == results.config_hash(cfg(8, 1), world=2) == results.config_hash(cfg(4, 2), world=2)
    assert one == results.config_hash(cfg(8, 2), world=1)
    assert one != results.config_hash(cfg(8, 1), world=1)          # another global batch: another experiment
    plain = cfg(16, 1)
    del plain["distributed"]                                         # the strategy is not part of it either
    assert one == results.config_hash(plain)


def test_records_are_group_readable(tmp_path):
    p = results.write(tmp_path, record())
    assert p.stat().st_mode & 0o044 == 0o044


def test_next_id_names_the_record_a_run_will_write(tmp_path):
    config = record()["config"]
    assert results.next_id(tmp_path, config) == results.base_id(config)
    results.write(tmp_path, record())
    assert results.next_id(tmp_path, config) == results.base_id(config) + ".r2"
    assert results.write(tmp_path, record(), rerun=True).stem == results.base_id(config) + ".r2"


def test_checkpoint_and_logging_frequency_are_not_part_of_the_identity(tmp_path):
    """They change no result (resume is exact), so they must not make another run id. A record written while
    they still were in the identity (its file named by the old hash) is still found as this run's."""
    from conftest import compose
    from lorabench.config import to_container

    base = to_container(compose("trainer.checkpoint_every=0", "trainer.log_every=1"))
    other = to_container(compose("trainer.checkpoint_every=5", "trainer.log_every=10"))
    assert results.config_hash(base) == results.config_hash(other)
    assert results.config_hash(base) != results.config_hash(to_container(compose("trainer.eval_every=7")))
    old_name = "0123456789ab-s0"    # what the hash with checkpoint_every in it named the record
    folder = results.run_dir(tmp_path, other)
    folder.mkdir(parents=True)
    (folder / f"{old_name}.json").write_text(json.dumps({"status": "success", "config": other,
                                                         "code": codeid.code_id(other)}))
    assert results.existing(tmp_path, base) == folder / f"{old_name}.json"
