"""Every option of every config group composes, validates, and every experiment composes."""
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from conftest import CONFIGS, compose
from lorabench.config import validate

GROUPS = ["model", "adapter", "task", "trainer", "quant", "logger", "paths", "experiment"]


def options(group):
    base = CONFIGS / group
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))


def test_every_group_has_options():
    for g in GROUPS:
        assert options(g), f"configs/{g}/ is empty"


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_option_composes(group, option):
    cfg = compose(f"{group}={option}")
    assert cfg.model.name and cfg.adapter.name and cfg.task.name


@pytest.mark.parametrize("task", options("task"))
def test_every_task_validates_with_the_model_it_composes(task):
    cfg = compose(f"task={task}")
    validate(cfg)
    assert cfg.task.mini == ("mini" in cfg.task.name)   # a mini split says so in its name


@pytest.mark.parametrize("adapter", options("adapter"))
def test_every_adapter_validates_on_the_default_model(adapter):
    validate(compose(f"adapter={adapter}"))


@pytest.mark.parametrize("launcher", ["local", "slurm", "slurm_local"])
def test_launchers_compose(launcher):
    import lorabench.config  # noqa: F401

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[f"hydra/launcher={launcher}"],
                            return_hydra_config=True)
    assert cfg.hydra.launcher._target_


def test_paper_protocol_composes():
    cfg = compose("adapter=lora_ga", "task=gsm8k")
    assert (cfg.adapter.init, cfg.task.name, cfg.task.mini) == ("lora_ga", "gsm8k", False)
    validate(cfg)


def test_command_line_beats_experiment():
    cfg = compose("experiment=lora_ga/llama2_gsm8k", "adapter=pissa")
    assert cfg.adapter.name == "pissa" and cfg.model.name == "llama2-7b"


@pytest.mark.parametrize("adapter", options("adapter"))
def test_adapter_yaml_lists_every_option_of_its_method(adapter):
    from lorabench.adapters import REGISTRY

    cfg = compose(f"adapter={adapter}")
    assert set(cfg.adapter.options) == set(REGISTRY[cfg.adapter.init].defaults)


@pytest.mark.parametrize("name", options("experiment/compare"))
def test_comparison_sweeps_every_init_at_log_spaced_rates_around_the_shared_one(name):
    # At least 3 rates (the report extends an edge choice: lorabench/report/extend.py) and 2 seeds (intervals
    # count item noise too); the commonsense comparison affords no more within its 150-minute budget.
    import math

    import lorabench.config  # noqa: F401

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[f"experiment=compare/{name}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    methods = params["adapter"].split(",")
    lrs = [float(x) for x in str(params["trainer.lr"]).split(",")]
    assert {"lora", "pissa", "milora", "olora", "lora_ga", "eva", "gora", "corda", "lora_one", "dora",
            "rslora"} <= set(methods) and methods[0] == cfg.compare.baseline
    assert len(str(params["seed"]).split(",")) >= 2 and len(lrs) >= 3 and lrs[0] < cfg.compare.shared_lr < lrs[-1]
    assert cfg.compare.shared_lr in lrs
    steps = [math.log10(b / a) for a, b in zip(lrs, lrs[1:])]
    assert min(steps) > 0 and max(steps) < 1.2 * min(steps)      # log-spaced (1, 3, 10...), increasing
    assert list(params)[-1] == "trainer.lr"                      # varies fastest: inits are reused
    for m in methods:   # every member validates before the sweep starts anything
        validate(compose(f"experiment=compare/{name}", f"adapter={m}"))


@pytest.mark.parametrize("experiment", ["lora_ga/llama2_gsm8k", "lora_ga/llama2_humaneval", "lora_ga/t5_glue"])
def test_lora_ga_paper_experiments_estimate_the_gradient_on_8_samples(experiment):
    # Outsider565/LoRA-GA reproduce/conf/init/gradient.yaml @89af7de: bsz 1, iters 8
    a = compose(f"experiment={experiment}").adapter
    assert (a.init, a.init_batches, a.init_batch_size) == ("lora_ga", 8, 1)


def test_an_absolute_output_dir_stays_absolute(tmp_path):
    import lorabench.config  # noqa: F401  (registers the resolvers)

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[f"paths.output_dir={tmp_path}"],
                            return_hydra_config=True)
    assert cfg.hydra.sweep.dir.startswith(f"{tmp_path}/sweeps/")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=["paths.output_dir=outputs", "paths.root=/r"],
                            return_hydra_config=True)
    assert cfg.hydra.sweep.dir.startswith("/r/outputs/sweeps/")
