import os
import sys
from pathlib import Path

import pytest

from slurm_cluster import slurm_cluster  # noqa: F401  the session fixture of the real local SLURM cluster

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

# A few seconds end to end: tiny random Llama, tiny data, a handful of steps.
FAST = ["model=tiny_llama", "trainer=test", "logger=none", "eval_base=false", "task.train_size=16", "task.valid_size=4",
        "task.eval_size=4", "task.max_new_tokens=8", "task.max_length=128", "task.eval_batch_size=4"]


def compose(*overrides, root=None):
    """The config `python run.py <overrides>` would run, composed in-process."""
    import lorabench.config  # noqa: F401  registers the schema
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    extra = [f"paths.root={root}"] if root else []
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[*overrides, *extra])


@pytest.fixture
def fast_cfg(tmp_path):
    def make(*overrides):
        return compose(*FAST, *overrides, root=tmp_path)
    return make


def run_cli(*args, env=None, timeout=120):
    import subprocess

    e = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=ROOT)


class Smol:
    """SmolLM2-135M-Instruct (packaged, real weights) with a few real gsm8k_mini training batches."""

    def __init__(self):
        from lorabench import models, tasks
        from lorabench.data import collate, tokenize_sft

        self.cfg = compose("model=smollm2_135m", "task.train_size=16", "task.valid_size=2", "task.max_length=128")
        self.tokenizer = models.load_tokenizer(self.cfg.model)
        data = tasks.family("gsm8k").load(self.cfg.task, self.tokenizer)
        samples = tokenize_sft(data.train, self.tokenizer, self.cfg.task.max_length)
        pad = self.tokenizer.pad_token_id
        self.batches = [collate(samples[i:i + 2], pad) for i in range(0, 8, 2)]   # 4 batches of 2, <= 128 tokens

    def compose(self, adapter, *overrides):
        return compose("model=smollm2_135m", f"adapter={adapter}", *overrides)

    def load(self, cfg=None):
        """A fresh copy of the base model (about 2 s from the converted cache)."""
        from lorabench import models

        cfg = cfg or self.cfg
        torch_seed(0)
        model = models.load_model(cfg.model, cfg.get("quant"))
        model._lorabench_targets = list(cfg.model.target_modules)
        return model


def two_layers(model):
    """SmolLM2's first two decoder layers (real weights): their inputs are those of the full model, 15x cheaper."""
    model.model.layers = model.model.layers[:2]
    model.config.num_hidden_layers = 2
    return model


def logits(model, batch):
    import torch

    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def torch_seed(s):
    import torch

    torch.manual_seed(s)


@pytest.fixture(scope="session")
def smol():
    return Smol()
