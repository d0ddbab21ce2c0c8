"""lm-evaluation-harness (0.4.x) as an evaluation backend: scores the model IN MEMORY, as it is at that point
of the run (the trained adapter, or the base model), through lm-eval's own HF wrapper, tasks and metrics.

Why lm-eval itself and not only our `eval.loglik`: the field reports commonsense numbers from lm-eval, and a
number from our re-implementation is only as good as its agreement with lm-eval's; running both on the same
items (tasks/commonsense_lm_eval.py) puts that agreement in every record. Ours stays the default because it
runs the choices of a question in one shared context pass (2x faster, `make bench`), and under our sharding.

Two kinds of task:
- lm-eval's tasks by name (`hellaswag`, `arc_easy`, ...): its registry, its hub datasets (network needed).
- local tasks: a stock task's YAML `include`d by absolute path (its prompt, choices, target and
  `!function` helpers exactly as the installed lm-eval defines them) with the dataset swapped for a local
  jsonl file of raw rows we pass in (`write_local_task`). Offline, and on exactly the items we score.

Checked against lm-eval 0.4.13: evaluator.simple_evaluate (a model object is used as is; seeds are set
unless passed None), models/huggingface.HFLM (`pretrained` may be a model object; `add_bos_token`),
tasks/_yaml_loader.load_yaml (`include` by absolute path; `!function` resolved beside the included file),
api/task.py ConfigurableTask.process_results (acc, acc_norm = argmax of loglik / len(choice)).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

# lm-eval's per-task INFO/WARNING lines (building contexts, "pretrained model kwarg is not of type str",
# a fewshot split taken from test when there is no train split) say nothing a lorabench user can act on.
_LOGGERS = ("lm_eval", "lm-eval")


def stock_yaml(relative: str) -> Path:
    """The installed lm-eval's task file, e.g. 'winogrande/default.yaml'."""
    from lm_eval import tasks

    path = Path(tasks.__file__).parent / relative
    if not path.is_file():
        import lm_eval

        raise FileNotFoundError(f"lm-eval {getattr(lm_eval, '__version__', '?')} has no task file {relative}; "
                                f"lorabench's local tasks follow lm-eval 0.4.x (pip install 'lm-eval>=0.4,<0.5').")
    return path


def write_local_task(root: Path, name: str, stock: str, rows: list[dict], metrics=("acc", "acc_norm")) -> str:
    """A task `name` under `root`: the stock task file `stock` on the jsonl of `rows` (its test split, no
    train or validation split, zero-shot), reporting `metrics`. Returns the task name."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "include": str(stock_yaml(stock)), "task": name, "tag": [],
        "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(data)}},
        "training_split": None, "validation_split": None, "test_split": "test", "fewshot_split": None,
        "num_fewshot": 0,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics],
    }
    # JSON is YAML: no !function tag is needed here, the included stock file brings its own.
    (root / f"{name}.yaml").write_text(json.dumps(config, indent=1) + "\n")
    return name


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts a BOS in front by itself: lm-eval's HF wrapper then gets add_bos_token=True,
    so its requests are tokenized as ours (eval.loglik keeps the tokenizer's special tokens)."""
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token_id is not None and len(ids) > 0 and ids[0] == tokenizer.bos_token_id


def evaluate(model, tokenizer, task_names: list[str], include_path: Path | None = None, batch_size: int = 16,
             limit: int | None = None, max_length: int | None = None) -> dict:
    """lm-eval on `task_names` with the model as it is now. {'results': {task: {metric: value}}, 'samples':
    {task: [per-item dicts in doc order: doc_id, loglik, pred, acc, acc_norm...]}, 'version'}.

    include_path: a folder of local tasks (write_local_task); only those are indexed then (the stock files
    are reached through `include`), otherwise lm-eval's own registry. limit: the first N items of each task.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    levels = {n: logging.getLogger(n).level for n in _LOGGERS}
    for n in _LOGGERS:
        logging.getLogger(n).setLevel(logging.ERROR)
    was_training = model.training
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length,
                  add_bos_token=adds_bos(tokenizer))
        manager = TaskManager(include_path=str(include_path) if include_path else None,
                              include_defaults=include_path is None)
        # Seeds None: lm-eval would reseed python, numpy and torch globally; zero-shot needs no sampler seed.
        out = lm_eval.simple_evaluate(model=lm, tasks=list(task_names), task_manager=manager, num_fewshot=0,
                                      limit=limit, log_samples=True, bootstrap_iters=0, random_seed=None,
                                      numpy_random_seed=None, torch_random_seed=None)
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        model.train(was_training)
    results = {t: {k.split(",")[0]: v for k, v in r.items() if k != "alias" and isinstance(v, (int, float))}
               for t, r in out["results"].items()}
    # keyed by lm-eval's leaf tasks (a group name such as `mmlu` expands to its subtasks)
    samples = {t: [_sample(s) for s in sorted(ss, key=lambda s: s["doc_id"])] for t, ss in out["samples"].items()}
    return {"results": results, "samples": samples, "version": getattr(lm_eval, "__version__", None)}


def _sample(s: dict) -> dict:
    """One lm-eval item: its per-choice log-likelihoods and metrics (multiple choice), or its metrics."""
    out = {"doc_id": s["doc_id"]}
    resps = s.get("filtered_resps")
    if resps and isinstance(resps[0], (list, tuple)) and len(resps[0]) == 2:   # (loglik, is_greedy) per choice
        out["loglik"] = [float(r[0]) for r in resps]
    out.update({k: v for k, v in s.items() if k in ("acc", "acc_norm", "acc_bytes", "exact_match")})
    return out
