"""Full fine-tuning trains every parameter by default, and only the named modules when adapter.target_modules is
set (the GoRA Llama experiments: the attention projections, as GoRA's official full-FT baseline)."""
import pytest
import torch

from conftest import compose
from lorabench import adapters, models
from lorabench.errors import ConfigError

ATTENTION = {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(2) for p in "qkvo"}


def init(*overrides):
    cfg = compose("model=tiny_llama", *overrides)
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    base._lorabench_targets = list(cfg.model.target_modules)
    return cfg, adapters.init_adapter(base, cfg.adapter)


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_default_trains_every_parameter():
    cfg, (model, report) = init("adapter=full_ft")
    assert cfg.adapter.target_modules is None and "trainable" not in report.extra
    assert trainable(model) == {n for n, _ in model.named_parameters()}


def test_named_targets_train_exactly_those_weights():
    _, (model, report) = init("adapter=full_ft", "adapter.target_modules=[q_proj,k_proj,v_proj,o_proj]")
    assert trainable(model) == ATTENTION
    assert report.extra["trainable_modules"] == 8


@pytest.mark.parametrize("experiment", ["gora/llama3_1_gsm8k", "gora/llama3_1_humaneval"])
def test_gora_experiments_full_ft_trains_the_attention_projections_only(experiment):
    _, (model, _) = init(f"experiment={experiment}", "adapter=full_ft", "model=tiny_llama")
    assert trainable(model) == ATTENTION


def test_all_linear_leaves_embeddings_norms_and_head_frozen():
    _, (model, _) = init("adapter=full_ft", "adapter.target_modules=[all-linear]")
    names = trainable(model)
    assert len(names) == 2 * 7 and all(n.endswith("proj.weight") for n in names)


def test_targets_matching_nothing_fail():
    with pytest.raises(ConfigError, match="matches no module"):
        init("adapter=full_ft", "adapter.target_modules=[wq]")
