"""What a record reports about one model state: the task's metrics on the test split, the same metrics on
the validation split (the only split a learning rate may be chosen on), and the held-out loss of the
reference responses (mean per target token: response tokens, or examples for a classification head)."""
from __future__ import annotations

import math
from contextlib import contextmanager

from lorabench.train import eval_loss, is_seq2seq


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
                "loss": losses(model, valid_samples, heldout_samples, cfg, tokenizer.pad_token_id, accelerator)}


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
