"""What a record reports about one model state: the task's metrics on the test split, the same metrics on
the validation split (the only split a learning rate may be chosen on), and the held-out loss of the
reference responses (mean per target token: response tokens, or examples for a classification head)."""
from __future__ import annotations

import hashlib
import json
import math
from contextlib import contextmanager

from lorabench.train import eval_loss, is_seq2seq

ITEM_KEYS = ("correct", "accuracy")   # per-sample 0/1 fields that the families' accuracies average


@contextmanager
def merged(model, enabled: bool):
    """eval_merged: score W + s*B*A as one weight, as a deployed adapter runs; unmerged afterwards. Each
    forward then costs the base model's (no per-layer LoRA branch; for DoRA no weight norm per call), which
    matters most in generation, where every new token is a forward. The numbers differ from the unmerged
    model's by float rounding only."""
    if not (enabled and hasattr(model, "merge_adapter")):   # the base model (eval_base) has nothing to merge
        yield
        return
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


def losses(model, valid_samples: list[dict], heldout_samples: list[dict], cfg, pad_id: int, accelerator) -> dict:
    seq2seq, bs = is_seq2seq(model), cfg.task.eval_batch_size
    out = {}
    for split, samples in (("valid", valid_samples), ("test", heldout_samples)):
        if samples:
            out[split] = eval_loss(model, samples, bs, pad_id, accelerator, seq2seq)
    return out


def score(model, tokenizer, task, data, valid_samples: list[dict], heldout_samples: list[dict], cfg,
          accelerator, valid_metrics: bool = True) -> dict:
    """{'test': metrics, 'valid': metrics or None, 'loss': {'valid', 'test'}} for the model as it is now.
    The base model skips the validation metrics (nothing is chosen on them); its losses are cheap."""
    with merged(model, cfg.eval_merged):
        test = task.evaluate(model, tokenizer, data.test, cfg.task, accelerator)
        valid = None
        if valid_metrics and data.valid_eval:
            valid = task.evaluate(model, tokenizer, data.valid_eval, cfg.task, accelerator)
        return {"test": test, "valid": valid,
                "items": {"test": per_item(test, data.test), "valid": valid and per_item(valid, data.valid_eval)},
                "loss": losses(model, valid_samples, heldout_samples, cfg, tokenizer.pad_token_id, accelerator)}


def items_digest(items: list[dict]) -> str:
    """Names the item set: two records with the same digest scored the same items in the same order."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _item_scores(samples: list[dict], primary: str) -> tuple[list[float], list[str] | None] | None:
    """Each item's contribution to the primary metric and, for a mean of per-group accuracies (commonsense's
    `average`), its group; None where the primary metric is not an item mean (MCC, F1)."""
    if not samples:
        return None
    s0 = samples[0]
    if "n" in s0 and "c" in s0 and primary == "pass@1":                        # code: c of n samples passed
        return [s["c"] / s["n"] for s in samples], None
    groups = [s["dataset"] for s in samples] if primary == "average" and "dataset" in s0 else None
    key = primary if primary in s0 else next((k for k in ITEM_KEYS if k in s0), None)
    if key is not None:
        return [float(s[key]) for s in samples], groups
    if primary == "accuracy" and "gold" in s0 and "pred" in s0:
        return [float(s["gold"] == s["pred"]) for s in samples], None
    return None


def per_item(metrics: dict, items: list[dict]) -> dict | None:
    """Compact per-item results of the primary metric: the item set's digest, each item's score ('0'/'1'
    characters, or numbers) and, where the metric averages groups, each item's group. Kept only when the
    weighted mean of the item scores reproduces the metric exactly, so an analysis over items is one over
    the number reported."""
    found = _item_scores(metrics.get("samples") or [], metrics["primary"])
    if found is None or len(found[0]) != len(items):
        return None
    scores, groups = found
    names = sorted(set(groups)) if groups else None
    weights = item_weights([names.index(g) for g in groups] if groups else None, len(scores))
    if not math.isclose(sum(w * x for w, x in zip(weights, scores)), metrics["values"][metrics["primary"]],
                        rel_tol=1e-9, abs_tol=1e-12):
        return None
    binary = all(x in (0.0, 1.0) for x in scores)
    out = {"digest": items_digest(items), "n": len(scores),
           "scores": "".join("1" if x else "0" for x in scores) if binary else [round(x, 8) for x in scores]}
    if names:
        out["groups"] = names
        out["group_of"] = [names.index(g) for g in groups]
    return out


def item_weights(group_of: list[int] | None, n: int) -> list[float]:
    """Each item's weight in the metric: 1/n, or 1/(groups x the group's size) for a mean of group means."""
    if not group_of:
        return [1.0 / n] * n
    sizes = {g: group_of.count(g) for g in set(group_of)}
    return [1.0 / (len(sizes) * sizes[g]) for g in group_of]


def summary(trained: dict, base: dict | None) -> str:
    """'accuracy 0.1200 -> 0.4500; held-out loss 2.31 -> 0.87 (perplexity 10.1 -> 2.4)' (base -> trained)."""
    m = trained["test"]
    primary = m["primary"]
    parts = [f"{primary} " + (f"{base['test']['values'][primary]:.4f} -> " if base else "")
             + f"{m['values'][primary]:.4f} on {m['n']} test problems"]
    if "test" in trained["loss"]:
        t, b = trained["loss"]["test"], (base or {}).get("loss", {}).get("test")
        parts.append("held-out loss " + (f"{b:.4f} -> " if b is not None else "") + f"{t:.4f} (perplexity "
                     + (f"{math.exp(b):.2f} -> " if b is not None else "") + f"{math.exp(t):.2f})")
    return "; ".join(parts) + (" (base -> trained)" if base else "")
