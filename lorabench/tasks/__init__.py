"""Task families. Each module owns its data source, prompt format and scoring protocols:

    PROTOCOLS = (...)                                   # named scoring protocols; the record names the one used
    check(task_cfg, model_cfg)                          # config-time checks (ConfigError), before a model loads
    load(task_cfg, tokenizer) -> TaskData               # hub data calls hub.require_hub first (offline: fail fast)
        # train / valid / test are disjoint; valid_eval (valid, scored like test) chooses learning rates,
        # heldout (test in training format) gives the held-out loss, where the family has them
    evaluate(model, tokenizer, test, task_cfg, accelerator) -> dict
        # {'protocol', 'primary', 'values': {metric: value}, 'n', 'samples': [...]}

Training examples are {'prompt', 'response'} (loss on the response only; causal LMs and seq2seq models) or
{'text', 'text_pair', 'label'} (a classification head); `data.tokenize` turns either into model inputs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from lorabench.errors import ConfigError

# The Alpaca prompt without input (LoRA-GA reproduce/data.py template_wo_input; LLM-Adapters; PiSSA).
ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")

FAMILIES = {"gsm8k": "lorabench.tasks.gsm8k", "glue": "lorabench.tasks.glue", "code": "lorabench.tasks.code",
            "commonsense": "lorabench.tasks.commonsense", "math": "lorabench.tasks.math"}


@dataclass
class TaskData:
    train: list[dict]
    valid: list[dict]
    test: list[dict]
    source: dict = field(default_factory=dict)   # where the data came from, for the record
    num_labels: int | None = None                # classification heads: outputs (1 = regression)
    valid_eval: list[dict] | None = None         # the valid split in `evaluate`'s format (learning-rate choice)
    heldout: list[dict] | None = None            # the test split in training format: held-out loss


def family(name: str):
    return importlib.import_module(FAMILIES[name])


def check_causal_lm(cfg, model_cfg, doing: str) -> None:
    if model_cfg.kind != "causal_lm":
        raise ConfigError(f"task {cfg.name} {doing} with a causal LM; model {model_cfg.name} is {model_cfg.kind}. "
                          f"Use model=smollm2_135m or another causal LM.")


def check_options(cfg, known) -> None:
    """task.options keys must be the family's own (a typo fails instead of being ignored)."""
    unknown = sorted(set(cfg.options or {}) - set(known))
    if unknown:
        raise ConfigError(f"task {cfg.name}: unknown task.options {unknown}; "
                          + (f"known: {', '.join(known)}." if known else "this task takes no task.options; remove them."))
