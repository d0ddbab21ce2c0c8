"""trainer.global_batch: a paper's batch over all processes. The accumulation is derived per run, a split that
cannot reach it fails before a model loads, and the run's identity is the global batch however it is split."""
import pytest
from omegaconf import OmegaConf

from conftest import compose
from lorabench import results
from lorabench.config import to_container
from lorabench.cluster.distributed import apply_global_batch
from lorabench.errors import ConfigError


@pytest.mark.parametrize("world,accum", [(1, 8), (2, 4), (8, 1)])
def test_accumulation_is_derived_from_the_processes(world, accum):
    tr = compose("trainer.batch_size=4", "trainer.global_batch=32").trainer
    apply_global_batch(tr, world)
    assert tr.grad_accum == accum and tr.batch_size * tr.grad_accum * world == 32


def test_a_split_that_cannot_reach_it_names_the_batch_sizes_that_can():
    tr = compose("trainer.batch_size=4", "trainer.global_batch=32").trainer
    with pytest.raises(ConfigError, match=r"set trainer.batch_size to one of \[1, 2\]"):
        apply_global_batch(tr, 16)   # 4 x 16 processes > 32
    with pytest.raises(ConfigError, match="run on a number of processes that divides 32"):
        apply_global_batch(tr, 3)


def test_identity_is_the_global_batch_however_split():
    def cfg(*overrides):
        return to_container(compose(*overrides))
    one = cfg("trainer.batch_size=4", "trainer.global_batch=32")
    two = cfg("trainer.batch_size=2", "trainer.global_batch=32")
    accum = cfg("trainer.batch_size=4", "trainer.grad_accum=8")
    assert results.config_hash(one, 1) == results.config_hash(two, 2) == results.config_hash(accum, 1)
    assert results.config_hash(one, 1) != results.config_hash(cfg("trainer.batch_size=4", "trainer.global_batch=64"), 1)


# Each paper experiment's global batch, as its trainer / experiment file states it with its source.
PAPER_GLOBAL_BATCH = {
    "lora_ga/llama2_gsm8k": 32,     # configs/trainer/lora_ga_paper.yaml (LoRA-GA's Llama-2-7B setting)
    "lora_ga/t5_glue": 32,          # configs/trainer/t5_glue_paper.yaml (LoRA-GA reproduce/conf/model/t5base.yaml)
    "pissa/llama2_gsm8k": 128,      # configs/trainer/pissa_paper.yaml (PiSSA's setting)
    "eva/llama2_gsm8k": 32,         # configs/trainer/eva_paper.yaml (EVA Table 4)
    "gora/llama3_1_gsm8k": 64,      # GoRA scripts/gora/*.sh: 4 per GPU x accum 2 x 8 GPUs
    "gora/t5_glue": 32,             # GoRA t5_train.py: batch 32 (via t5_glue_paper)
}


@pytest.mark.parametrize("experiment,batch", sorted(PAPER_GLOBAL_BATCH.items()))
def test_paper_experiments_state_their_global_batch(experiment, batch):
    tr = compose(f"experiment={experiment}").trainer
    assert tr.global_batch == batch and tr.grad_accum == 1
    for world in (1, 2, 4):
        t = OmegaConf.create(OmegaConf.to_container(tr))
        if batch % (t.batch_size * world) == 0:
            apply_global_batch(t, world)
            assert t.batch_size * t.grad_accum * world == batch
