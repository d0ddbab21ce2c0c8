"""The learning-rate schedule: warmup, then cosine to a floor (GoRA's --lr-decay-ratio), linear or constant."""
import math

import pytest
import torch

from conftest import compose
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.train import make_scheduler


def rates(cfg, steps):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched, out = make_scheduler(opt, cfg, steps), []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out + [sched.get_last_lr()[0]]


def test_cosine_floor():
    cfg = compose("trainer.lr=1e-3", "trainer.warmup_ratio=0.1", "trainer.min_lr_ratio=0.1").trainer
    lr = rates(cfg, 100)
    assert lr[0] == 0 and lr[10] == pytest.approx(1e-3)                  # 10 warmup steps
    assert lr[100] == pytest.approx(1e-4) and min(lr[10:]) == pytest.approx(1e-4)   # ends at 0.1 x lr
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90))            # GoRA's min + (max - min) x cosine
    assert lr[55] == pytest.approx(1e-3 * mid)


def test_no_floor_is_the_plain_cosine():
    plain = compose("trainer.lr=1e-3").trainer
    assert plain.min_lr_ratio == 0 and rates(plain, 50)[-1] == 0
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ref = get_cosine_schedule_with_warmup(opt, math.ceil(plain.warmup_ratio * 50), 50)
    expected = []
    for _ in range(50):
        expected.append(ref.get_last_lr()[0])
        opt.step()
        ref.step()
    assert rates(plain, 50)[:50] == expected   # bit for bit


@pytest.mark.parametrize("override,match", [("trainer.min_lr_ratio=1.0", "in \\[0, 1\\)"),
                                            ("trainer.schedule=linear", "floor of the cosine")])
def test_bad_floor_fails_at_config_time(override, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose("trainer.min_lr_ratio=0.1", override))


def test_gora_llama_experiments_decay_to_a_tenth():
    for name in ("gora/llama3_1_gsm8k", "gora/llama3_1_humaneval", "gora/llama3_1_gsm8k_r128"):
        assert compose(f"experiment={name}").trainer.min_lr_ratio == 0.1
