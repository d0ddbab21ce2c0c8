"""Bad input fails before any model loads, with a message that says what to change."""
import time

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from conftest import compose, run_cli
from lorabench import models
from lorabench.config import validate
from lorabench.errors import ConfigError


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("a model was loaded before the config was rejected")
    monkeypatch.setattr(models, "load_model", forbidden)


@pytest.mark.parametrize("overrides,expected", [
    (["adapter.r=0"], "adapter.r=0"),
    (["adapter.r=-4"], "positive"),
    (["adapter.alpha=0"], "alpha must be positive"),
    (["adapter.r=200"], "at most 192"),                 # SmolLM2's k_proj/v_proj are 192x576
    (["adapter=lora_ga", "adapter.r=100"], "at most 96"),  # LoRA-GA needs 2r singular vectors
    (["~task"], "No task selected"),
    (["+adapter.options.bogus=1"], "unknown to init 'lora'"),
    (["adapter=pissa", "+adapter.options.niterr=4"], "Its options are: niter, svd_seed"),
    (["adapter=full_ft", "quant=nf4"], "cannot train a 4-bit base"),
    (["adapter.init=nonexistent"], "not an init strategy"),
    (["trainer.schedule=exponential"], "cosine, linear or constant"),
    (["adapter.target_modules=[no_such_layer]"], "matches no linear layer"),
])
def test_invalid_values(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        validate(compose(*overrides))


def test_unknown_group_option_lists_the_choices():
    with pytest.raises(ConfigCompositionException) as e:
        compose("adapter=loraa")
    assert "Available options" in str(e.value.__cause__ or e.value) and "lora_ga" in str(e.value.__cause__ or e.value)


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigCompositionException) as e:
        compose("adapter.rank=8")
    assert "rank" in str(e.value)


def test_unknown_method_option_is_rejected_at_compose():
    with pytest.raises(ConfigCompositionException, match="adapter.options.niterr"):
        compose("adapter=pissa", "adapter.options.niterr=4")


def test_wrong_type_is_rejected():
    with pytest.raises((ConfigCompositionException, ValidationError, ConfigKeyError)):
        compose("adapter.r=eight")


@pytest.mark.parametrize("args,needle", [
    (["adapter.r=0"], "adapter.r=0"),
    (["adapter.r=200"], "Lower adapter.r"),
    (["adapter=lora_ga", "task=gsm8k"], "task=gsm8k_mini"),   # offline: names the offline alternative
    (["task=glue", "task.subset=cola"], "task=glue_mini"),
    (["task=humaneval"], "task=humaneval_mini"),
    (["task=mbpp"], "task=mbpp_mini"),
    (["task=commonsense"], "task=commonsense_mini"),
    (["model=llama2_7b"], "model=smollm2_135m"),
])
def test_cli_fails_fast_with_one_clear_line(args, needle):
    t = time.perf_counter()
    p = run_cli(*args, "logger=none", "paths.root=/tmp/lorabench-never-written")
    assert p.returncode == 2, p.stderr[-2000:]
    assert needle in p.stderr
    assert "Traceback" not in p.stderr
    assert time.perf_counter() - t < 60
