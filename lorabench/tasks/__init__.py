"""Task families. Each module owns its data source, prompt format and scoring protocol:

    load(task_cfg) -> TaskData             # train/valid as {'prompt', 'response'}; test as the family needs
    evaluate(model, tokenizer, test, task_cfg, accelerator) -> dict
        # {'protocol', 'primary', 'values': {metric: value}, 'n', 'samples': [...]}
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

FAMILIES = {"gsm8k": "lorabench.tasks.gsm8k"}


@dataclass
class TaskData:
    train: list[dict]
    valid: list[dict]
    test: list[dict]
    source: dict = field(default_factory=dict)   # where the data came from, for the record


def family(name: str):
    return importlib.import_module(FAMILIES[name])
