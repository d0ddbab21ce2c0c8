import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

# A few seconds end to end: tiny random Llama, tiny data, a handful of steps.
FAST = ["model=tiny_llama", "trainer=test", "logger=none", "task.train_size=16", "task.valid_size=4",
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
