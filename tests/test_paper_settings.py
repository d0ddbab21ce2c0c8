"""Every paper experiment resolves to its paper's settings (lorabench/paper_settings.py), for every method its
table compares, and every paper number the leaderboard shows is the table's. Compose only: no model loads."""
import math
import re
from functools import lru_cache

import pytest
from omegaconf import OmegaConf

from conftest import CONFIGS, compose
from lorabench.config import validate
from lorabench.paper_settings import ADAPTER_KEYS, BASELINES, PER_METHOD, SETTINGS, method_only
from lorabench.report.paper_tables import PAPERS, SOURCES, paper_cell, paper_number

EXPERIMENTS = CONFIGS / "experiment"
OURS = ("compare", "init_curves")   # our own comparisons, not a paper's table
PAPER_EXPERIMENTS = sorted(str(p.relative_to(EXPERIMENTS).with_suffix("")) for p in EXPERIMENTS.rglob("*.yaml")
                           if p.relative_to(EXPERIMENTS).parts[0] not in OURS)
NO_LORA = ("full_ft",)   # inits without LoRA matrices: adapter keys do not apply (compose only: no registry import)
_ABSENT = object()


@lru_cache(maxsize=None)
def composed(*overrides):
    return compose(*overrides)


def resolved(cfg, key):
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def same(actual, expected) -> bool:
    if isinstance(expected, bool) or expected is None or actual is None:
        return actual is expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-12)
    return actual == expected


def differences(cfg, experiment, keep=lambda key: True) -> dict:
    return {key: {"resolved": "<absent>" if resolved(cfg, key) is _ABSENT else resolved(cfg, key), "paper": value,
                  "source": source}
            for key, (value, source) in SETTINGS[experiment].items() if keep(key) and not same(resolved(cfg, key), value)}


def methods(experiment: str) -> list[str]:
    """The adapters the experiment's paper table compares (those with a config in configs/adapter/)."""
    names = sorted({key[-1] for key in PAPERS if key[0] == experiment})
    return [a for a in names if (CONFIGS / "adapter" / f"{a}.yaml").exists()]


def test_every_paper_experiment_has_its_settings_table():
    assert PAPER_EXPERIMENTS, "no paper experiments found under configs/experiment/"
    missing = sorted(set(PAPER_EXPERIMENTS) - set(SETTINGS))
    assert not missing, f"add the paper's settings of {missing} to lorabench/paper_settings.py SETTINGS"
    stale = sorted(set(SETTINGS) - set(PAPER_EXPERIMENTS))
    assert not stale, f"SETTINGS has entries without an experiment file: {stale}"


def test_every_setting_names_its_source():
    for experiment, table in SETTINGS.items():
        assert table, experiment
        for key, setting in table.items():
            assert isinstance(setting, tuple) and len(setting) == 2, (experiment, key)
            assert isinstance(setting[1], str) and setting[1].strip(), f"{experiment} {key}: no source"
        for key in ("trainer.lr", "trainer.max_steps", "model.source", "task.protocol"):
            assert key in table, f"{experiment}: {key} is not pinned"
        assert table["trainer.max_steps"][0] is None, f"{experiment}: a paper run trains whole epochs"


@pytest.mark.parametrize("experiment", sorted(SETTINGS))
def test_experiment_resolves_to_its_paper_settings(experiment):
    cfg = composed(f"experiment={experiment}")
    assert cfg.experiment == experiment
    assert not differences(cfg, experiment)


@pytest.mark.parametrize("experiment", sorted(SETTINGS))
def test_every_method_of_the_table_runs_at_the_tables_shared_settings(experiment):
    default = composed(f"experiment={experiment}")
    compared = methods(experiment)
    assert default.adapter.name in compared, f"{experiment}: its own method has no paper number"
    for adapter in compared:
        own = default.adapter.name == adapter   # e.g. eva/llama2_gsm8k's eva_rho1
        cfg = default if own else composed(f"experiment={experiment}", f"adapter={adapter}")
        assert cfg.adapter.name == adapter
        has_lora = cfg.adapter.init not in NO_LORA
        if not has_lora:   # config.validate refuses a LoRA+ rate without LoRA matrices
            assert cfg.trainer.loraplus_lr_ratio is None, f"adapter={adapter}"
        diff = differences(cfg, experiment, lambda key: (own or not method_only(experiment, key))
                           and (has_lora or not key.startswith(ADAPTER_KEYS)))
        assert not diff, f"adapter={adapter}"


@pytest.mark.parametrize("experiment", sorted(PER_METHOD))
def test_each_method_runs_at_its_own_row_where_the_table_gives_one(experiment):
    """PiSSA's GLUE: each method at its row of App. L Table 10 (epochs, batch, rate, alpha), not PiSSA's."""
    for adapter, table in PER_METHOD[experiment].items():
        cfg = composed(f"experiment={experiment}", f"adapter={adapter}")
        diff = {key: (resolved(cfg, key), value, source) for key, (value, source) in table.items()
                if not same(resolved(cfg, key), value)}
        assert not diff, f"{experiment} adapter={adapter}"
    assert set(methods(experiment)) <= set(PER_METHOD[experiment])


def test_pissa_glue_rows_are_table_10s():
    """Spot values read off the paper (arXiv 2404.02948v4 App. L Table 10), so a shifted column is caught."""
    rows = {("cola", "dora"): (20, 8, 1e-4, 6), ("sst2", "pissa"): (20, 16, 3e-5, 8),
            ("qnli", "lora"): (25, 32, 3e-4, 8), ("mnli", "dora"): (10, 32, 2e-4, 16)}
    for (task, adapter), (epochs, batch, lr, alpha) in rows.items():
        cfg = composed(f"experiment=pissa/deberta_glue_{task}", f"adapter={adapter}")
        assert (cfg.trainer.epochs, cfg.trainer.global_batch, cfg.trainer.lr, cfg.adapter.alpha) == (epochs, batch, lr, alpha)
    assert composed("experiment=pissa/deberta_glue_rte", "adapter=full_ft").trainer.lr == 4e-4   # LoRA's row


def _run_task(experiment: str, task: str | None) -> str:
    """The task name a run of the experiment records (the leaderboard looks the paper number up by it)."""
    if task is None:
        return composed(f"experiment={experiment}").task.name
    return composed(f"experiment={experiment}", f"task.subset={task.removeprefix('glue_')}").task.name


def test_every_paper_number_has_settings_a_source_and_is_shown_as_is():
    assert PAPERS
    problems = []
    for key, value in PAPERS.items():
        experiment, adapter = key[0], key[-1]
        task = key[1] if len(key) == 3 else None
        if experiment not in SETTINGS:
            problems.append(f"{key}: no settings table for {experiment} in lorabench/paper_settings.py")
        if not (experiment in SOURCES and SOURCES[experiment][0].strip()):
            problems.append(f"{key}: no source in lorabench/report/paper_tables.py SOURCES")
            continue
        if not (EXPERIMENTS / f"{experiment}.yaml").exists():
            problems.append(f"{key}: no experiment file configs/experiment/{experiment}.yaml")
            continue
        run_task = _run_task(experiment, task)
        if task is not None and run_task != task:
            problems.append(f"{key}: runs of task.subset={task.removeprefix('glue_')} record task {run_task}")
        shown = paper_number(experiment, adapter, run_task)   # as lorabench/report/leaderboard.py looks it up
        if shown != value:
            problems.append(f"{key}: the leaderboard shows {shown}, the table has {value}")
        elif paper_cell(experiment, shown) != f"{value:.2f}" + ("†" if SOURCES[experiment][1] else ""):
            problems.append(f"{key}: the leaderboard's cell is {paper_cell(experiment, shown)!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_paper_experiment_offline_names_its_model_and_mini_task(experiment, monkeypatch):
    """Offline, a paper experiment fails before anything loads, naming the packaged model and the task's mini
    variant to run instead (each an existing config)."""
    from lorabench import hub
    from lorabench.errors import OfflineError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose(f"experiment={experiment}")
    with pytest.raises(OfflineError, match=r"Offline, use model=\S+ task=\S+_mini") as e:
        hub.preflight(cfg)
    suggested = re.search(r"Offline, use (.+?) instead", str(e.value)).group(1).split()
    validate(compose(f"experiment={experiment}", *suggested))   # what it suggests is a valid run


def test_each_eva_paper_number_is_set_beside_a_run_of_its_rho():
    """adapter=eva composes rho=2 and adapter=eva_rho1 rho=1; each is named for it, and the paper numbers keyed by
    those names are the paper's rows of that rho (Table 8's EVA row is rho=1, Table 11 gives rho=2)."""
    from lorabench.report.paper_tables import EVA_RHO

    rows = {key: v for key, v in PAPERS.items() if key[-1] in EVA_RHO}
    assert rows and {key[-1] for key in rows} == {"eva", "eva_rho1"}
    for key in rows:
        cfg = composed(f"experiment={key[0]}", f"adapter={key[-1]}")
        assert cfg.adapter.name == key[-1] and cfg.adapter.options.rho == EVA_RHO[key[-1]], key
    assert PAPERS[("eva/llama2_gsm8k", "eva_rho1")] == 61.9 and PAPERS[("eva/llama2_gsm8k", "eva")] == 61.0
    assert PAPERS[("eva/llama2_math", "eva_rho1")] == 13.1 and PAPERS[("eva/llama2_math", "eva")] == 12.5
    assert composed("adapter=eva").adapter.options.rho == 2.0 and composed("adapter=eva").adapter.name == "eva"


def _baseline_differences(cfg, adapter):
    return {key: (resolved(cfg, key), value, source) for key, (value, source) in BASELINES[adapter].items()
            if not same(resolved(cfg, key), value)}


@pytest.mark.parametrize("experiment", sorted(SETTINGS))
def test_every_method_of_the_table_runs_with_its_own_papers_settings(experiment):
    """A baseline is the method its paper number is for: rsLoRA with use_rslora, DoRA with use_dora, no LoRA+
    outside GoRA, EVA at the rho of its row..."""
    default = composed(f"experiment={experiment}")
    for adapter in methods(experiment):
        assert adapter in BASELINES, f"add {adapter}'s own settings to lorabench/paper_settings.py BASELINES"
        cfg = default if default.adapter.name == adapter else composed(f"experiment={experiment}", f"adapter={adapter}")
        assert not _baseline_differences(cfg, adapter), f"{experiment} adapter={adapter}"


@pytest.mark.parametrize("experiment,adapter,override", [
    ("lora_ga/llama2_gsm8k", "rslora", "adapter.use_rslora=false"),       # not rsLoRA any more
    ("lora_ga/llama2_gsm8k", "dora", "adapter.use_dora=false"),
    ("lora_ga/llama2_gsm8k", "lora", "trainer.loraplus_lr_ratio=16"),     # LoRA+ is another method
    ("gora/llama3_1_gsm8k", "lora_ga", "trainer.loraplus_lr_ratio=16"),   # GoRA's script's LoRA+ on a baseline
    ("eva/llama2_gsm8k", "eva", "adapter.options.rho=1.0"),               # named eva, but not rho=2
    ("lora_ga/llama2_gsm8k", "lora_ga", "adapter.options.scale=gd"),
])
def test_a_baseline_off_its_own_settings_is_caught(experiment, adapter, override):
    cfg = compose(f"experiment={experiment}", f"adapter={adapter}", override)
    assert _baseline_differences(cfg, adapter)


@pytest.mark.parametrize("experiment,key", [("lora_ga/llama2_gsm8k", "adapter.dropout"),
                                            ("gora/llama3_1_gsm8k", "adapter.dropout"),
                                            ("eva/llama2_gsm8k", "adapter.dropout"),
                                            ("pissa/llama2_gsm8k", "adapter.dropout")])
def test_keys_the_source_fixes_beyond_the_headline_ones_are_pinned(experiment, key):
    """Dropout is fixed by every source (LoRA-GA run_exp.py and GoRA's parser leave peft's/their default 0): a
    change of it is caught like a change of the rate."""
    assert key in SETTINGS[experiment]
    assert differences(compose(f"experiment={experiment}", f"{key}=0.05"), experiment)


# ---- golden prompts and stop lists, one fixed item per protocol, from the official code ---------------------
JANET = ("Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
         "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
         "egg. How much in dollars does she make every day at the farmers' market?")
ALPACA_HEAD = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.\n\n### Instruction:\n")
# MetaMath eval_gsm8k.py / eval_math.py stop_tokens (meta-math/MetaMath @fe667b1); PiSSA inference/gen_vllm.py @c0121a7
METAMATH_STOPS = ["Question:", "Question", "USER:", "USER", "ASSISTANT:", "ASSISTANT", "Instruction:", "Instruction",
                  "Response:", "Response"]


def test_golden_gsm8k_prompts_and_stops():
    from lorabench.tasks import gsm8k, math

    # LoRA-GA reproduce/data.py load_gsm8k (@89af7de): x = f'Q: {question}\nA: ', the same for training
    assert gsm8k.prompt(JANET, "lora_ga") == gsm8k.train_prompt(JANET, "lora_ga") == f"Q: {JANET}\nA: "
    # ours stop on "\nQ:" / "\n\n\n" where LoRA-GA's utils.py model_inference stops on EOS only: its
    # extract_num reads the first '####', which a stop after the answer line cannot change
    assert gsm8k.STOPS["lora_ga"] == ["\nQ:", "\n\n\n"]
    # PiSSA inference/data/eval_gsm8k (@c0121a7) query of this item, = MetaMath eval_gsm8k.py problem_prompt
    assert gsm8k.prompt(JANET, "metamath") == (ALPACA_HEAD + JANET + "\n\n### Response: Let's think step by step.")
    # PiSSA train.py PROMPT: the training prompt ends "### Response:", the raw response follows it directly
    assert gsm8k.train_prompt(JANET, "metamath") == ALPACA_HEAD + JANET + "\n\n### Response:"
    assert gsm8k.STOPS["metamath"] == METAMATH_STOPS and math.STOPS["metamath"] == METAMATH_STOPS
    assert math.prompt(JANET, "metamath") == gsm8k.prompt(JANET, "metamath")
    # lm-evaluation-harness tasks/gsm8k/gsm8k.yaml doc_to_text (our stops: its commit 0391928's until)
    assert gsm8k.prompt(JANET, "lm_eval") == f"Question: {JANET}\nAnswer:"
    assert gsm8k.STOPS["lm_eval"] == ["\n\n", "Question:"]


def test_golden_metamath_training_example():
    """PiSSA train.py (@c0121a7): PROMPT.format(instruction=query) + f"{response}\\n{eos}", the MetaMathQA response
    raw ('#### N' line and 'The answer is: N' both kept)."""
    from lorabench.tasks import gsm8k

    raw = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18\nThe answer is: 18"
    example = {"prompt": gsm8k.train_prompt(JANET, "metamath"),
               "response": gsm8k.response("x\n#### 18", "metamath", raw=raw)}
    assert example["prompt"] + example["response"] == ALPACA_HEAD + JANET + "\n\n### Response:" + raw + "\n"


def test_golden_commonsense_prompts():
    """LLM-Adapters' instruction (the llm_adapters protocol) and lm-eval's stock requests (loglik: the installed
    lm-eval's own task files reproduce them item by item in tests/test_lm_eval.py)."""
    from lorabench.tasks import commonsense as cs

    q = cs.question("piqa", {"goal": "Open a jar.", "sol1": "Twist the lid.", "sol2": "Push the lid.", "label": 0})
    assert cs.prompt(q["instruction"]) == (ALPACA_HEAD + "Please choose the correct solution to the question: Open "
                                           "a jar.\n\nSolution1: Twist the lid.\n\nSolution2: Push the lid.\n\n"
                                           "Answer format: solution1/solution2\n\n### Response:\n")
    assert (q["contexts"][0], q["continuations"]) == ("Question: Open a jar.\nAnswer:", [" Twist the lid.",
                                                                                         " Push the lid."])


@pytest.mark.parametrize("experiment", ["eva/llama2_gsm8k", "eva/llama2_math", "eva/llama2_commonsense"])
def test_eva_rates_come_from_a_grid_chosen_on_held_out_items(experiment):
    """EVA App. B.2 chooses each method's rate from a grid: `-m` runs it as a comparison (every table method x
    rate x seed, valid items held out, Table 4's 5e-4 as the shared rate); a single run stays Table 4's run."""
    from lorabench.report.grid import design, is_comparison

    d = design(experiment)
    assert set(d["methods"]) == set(methods(experiment)) and d["seeds"] == [0, 1, 2]
    assert 5e-4 in d["lrs"] and min(d["lrs"]) < 5e-4 < max(d["lrs"])
    params = {k: str(v) for k, v in OmegaConf.load(EXPERIMENTS / f"{experiment}.yaml").hydra.sweeper.params.items()
              if k not in ("adapter", "seed", "trainer.lr")}
    member = composed(f"experiment={experiment}", "adapter=dora", "trainer.lr=1e-3", "seed=1",
                      *(f"{k}={v}" for k, v in params.items()))
    assert member.task.valid_size > 0 and is_comparison({"config": OmegaConf.to_container(member, resolve=True)})
    single = composed(f"experiment={experiment}")
    assert single.task.valid_size == 0 and not is_comparison({"config": OmegaConf.to_container(single, resolve=True)})
