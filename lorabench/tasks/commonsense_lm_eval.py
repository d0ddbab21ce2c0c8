"""Commonsense protocol `lm_eval`: lm-evaluation-harness scores the test items in memory (eval/lm_eval.py),
and our `loglik` protocol scores the same items beside it; the record keeps both and their agreement.

- Default: the eight datasets as lm-eval's stock tasks (boolq, piqa, social_iqa, hellaswag, winogrande,
  arc_easy, arc_challenge, openbookqa; their installed YAML files) on exactly our test items, written as local
  jsonl files: offline, and item by item comparable with ours. Every task reports acc and acc_norm (lm-eval's
  boolq, social_iqa and winogrande files list acc only; acc_norm is lm-eval's own computation, added here).
- task.options.lm_eval_tasks=[name, ...]: lm-eval's tasks by name from its registry (hub data, network
  needed), the first task.eval_size items of each (null: all); ours is not run (other items, other prompts).

Values: lm-eval's per-dataset acc (`<dataset>`) and acc_norm (`<dataset>_acc_norm`) and their averages under
the loglik protocol's names, ours as `ours_average` / `ours_average_acc_norm`, and `agree` / `agree_norm`, the
fraction of items where both chose the same answer (acc) or scored the same (acc_norm). `metrics['lm_eval']` holds lm-eval's own results dict.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

# our dataset -> lm-eval's stock task file (lm_eval/tasks/...) and the columns it reads that our raw row lacks
STOCK = {"boolq": "super_glue/boolq/default.yaml", "piqa": "piqa/piqa.yaml", "siqa": "siqa/siqa.yaml",
         "hellaswag": "hellaswag/hellaswag.yaml", "winogrande": "winogrande/default.yaml",
         "arc_e": "arc/arc_easy.yaml", "arc_c": "arc/arc_challenge.yaml", "obqa": "openbookqa/openbookqa.yaml"}


def stock_row(dataset: str, row: dict) -> dict:
    """A raw row in the columns of lm-eval's dataset: google/boolq's `answer` is super_glue's `label`."""
    row = dict(row)
    if dataset == "boolq":
        row["label"] = int(bool(row["answer"]))
    return row


def _flat(results: dict) -> dict[str, float]:
    return {f"{t}/{m}": v for t, r in results.items() for m, v in r.items()}


def score_local(model, tokenizer, items: list[dict], cfg, ours) -> list[dict]:
    """Per item: lm-eval's log-likelihoods and choices beside ours (`ours(items)`, the loglik protocol)."""
    from lorabench.eval import lm_eval

    present = [d for d in STOCK if any(x["dataset"] == d for x in items)]
    with tempfile.TemporaryDirectory(prefix="lorabench_lm_eval_") as tmp:
        names = {d: lm_eval.write_local_task(Path(tmp), f"lorabench_{d}", STOCK[d],
                                             [stock_row(d, x["row"]) for x in items if x["dataset"] == d])
                 for d in present}
        out = lm_eval.evaluate(model, tokenizer, list(names.values()), include_path=Path(tmp),
                               batch_size=cfg.eval_batch_size)
    theirs = {d: iter(out["samples"][names[d]]) for d in present}
    samples = []
    for x, mine in zip(items, ours(items)):
        t = next(theirs[x["dataset"]])
        samples.append({**mine, "lm_eval_loglik": t["loglik"], "lm_eval_correct": bool(t["acc"]),
                        "lm_eval_correct_norm": bool(t["acc_norm"]),
                        "lm_eval_pred": max(range(len(t["loglik"])), key=t["loglik"].__getitem__)})
    return samples


def metrics(samples: list[dict]) -> dict[str, float]:
    from lorabench.tasks.commonsense import metrics as loglik_metrics

    ours = loglik_metrics(samples, "loglik")
    theirs = loglik_metrics([{**s, "correct": s["lm_eval_correct"], "correct_norm": s["lm_eval_correct_norm"]}
                             for s in samples], "loglik")
    n = max(len(samples), 1)
    return {**theirs, "ours_average": ours["average"], "ours_average_acc_norm": ours["average_acc_norm"],
            "agree": sum(s["pred"] == s["lm_eval_pred"] for s in samples) / n,
            "agree_norm": sum(s["correct_norm"] == s["lm_eval_correct_norm"] for s in samples) / n}


def evaluate_named(model, tokenizer, cfg) -> dict:
    """lm-eval's registry tasks by name (hub data): lm-eval's metrics only."""
    from lorabench.eval import lm_eval

    names = list(cfg.options["lm_eval_tasks"])
    out = lm_eval.evaluate(model, tokenizer, names, batch_size=cfg.eval_batch_size, limit=cfg.eval_size)
    acc = [r["acc"] for r in out["results"].values() if "acc" in r]
    norm = [r["acc_norm"] for r in out["results"].values() if "acc_norm" in r]
    values = {**_flat(out["results"]), "average": sum(acc) / max(len(acc), 1)}
    if norm:
        values["average_acc_norm"] = sum(norm) / len(norm)
    return {"protocol": "lm_eval", "primary": "average", "values": values,
            "n": sum(len(v) for v in out["samples"].values()), "samples": [],
            "lm_eval": {"version": out["version"], "results": out["results"], "tasks": names}}
