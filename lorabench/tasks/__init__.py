"""Task families. Each module owns its data source, prompt format and scoring protocols:

    PROTOCOLS = (...)                                   # named scoring protocols; the record names the one used
    check(task_cfg, model_cfg)                          # config-time checks (ConfigError), before a model loads
    load(task_cfg, tokenizer) -> TaskData               # hub data calls hub.require_hub first (offline: fail fast)
    evaluate(model, tokenizer, test, task_cfg, accelerator) -> dict
        # {'protocol', 'primary', 'values': {metric: value}, 'n', 'samples': [...]}

Training examples are {'prompt', 'response'} (loss on the response only; causal LMs and seq2seq models) or
{'text', 'text_pair', 'label'} (a classification head); `data.tokenize` turns either into model inputs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

FAMILIES = {"gsm8k": "lorabench.tasks.gsm8k", "glue": "lorabench.tasks.glue", "code": "lorabench.tasks.code",
            "commonsense": "lorabench.tasks.commonsense"}


@dataclass
class TaskData:
    train: list[dict]
    valid: list[dict]
    test: list[dict]
    source: dict = field(default_factory=dict)   # where the data came from, for the record
    num_labels: int | None = None                # classification heads: outputs (1 = regression)


def family(name: str):
    return importlib.import_module(FAMILIES[name])
