"""Scoring speed: lorabench's batched scorers vs the same requests one at a time, same model and items, one run.

    python scripts/bench_score.py                    # SmolLM2-135M log-likelihood and first token; MiniLM head

- log-likelihood (lm-eval multiple choice; --n commonsense_mini questions, the 8 datasets in turn):
  `loglikelihoods` (the choices of a question share one context pass and its KV cache; the task's batch of 16)
  vs one forward per (context, choice) pair, as lm-eval's HF backend does at batch size 1;
- GLUE first token (t5_first_token on a causal LM, SST-2 prompts): `first_token_scores` at the task's batch size vs
  one prompt per forward;
- GLUE classification head (glue_mini: MiniLM-L6 on SST-2): `head_predictions` vs one sentence per forward.

Each pair is checked to give the same predictions (and the largest score difference is printed). The physical
reference beside the figures: the fp32 matmul rate and the memory bandwidth measured here.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import lorabench.config  # noqa: F401  registers the schema

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("config", list(overrides))


def best_of(fn, repeats: int):
    out, best = None, float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def loaded(cfg, n: int):
    """Model, tokenizer and the first n test items, taken evenly across the task's datasets (round robin)."""
    from lorabench import models
    from lorabench.tasks import family

    tok, model = models.load_tokenizer(cfg.model), models.load_model(cfg.model).eval()
    test = family(cfg.task.family).load(cfg.task, tok).test
    by: dict = {}
    for x in test:
        by.setdefault(x.get("dataset"), []).append(x)
    mixed = [x for group in zip(*by.values()) for x in group]
    return model, tok, mixed[:n]


@torch.no_grad()
def loglik_one_at_a_time(model, tok, requests):
    from lorabench.eval.loglik import encode_pair

    out = []
    for context, continuation in requests:
        ids, n = encode_pair(tok, context, continuation)
        logp = model(input_ids=torch.tensor([ids])).logits[0, -n - 1:-1].float().log_softmax(-1)
        out.append(logp.gather(-1, torch.tensor(ids[-n:])[:, None]).sum().item())
    return out


def bench_loglik(n, repeats):
    from lorabench.eval.loglik import loglikelihoods

    cfg = compose("task=commonsense_mini")
    model, tok, items = loaded(cfg, n)
    requests = [pair for x in items for pair in zip(x["contexts"], x["continuations"])]
    ours, t_ours = best_of(lambda: loglikelihoods(model, tok, requests, batch_size=cfg.task.eval_batch_size,
                                                  show_progress=False), repeats)
    loop, t_loop = best_of(lambda: loglik_one_at_a_time(model, tok, requests), repeats)
    diff = max(abs(a - b) for a, b in zip(ours, loop))
    tokens = sum(len(tok(c + x)["input_ids"]) for c, x in requests)
    return (f"log-likelihood, {cfg.model.name}", len(requests), tokens, t_ours, t_loop,
            f"max |score diff| {diff:.1e}")


def bench_first_token(n, repeats):
    from lorabench.tasks import glue

    cfg = compose("task=glue_mini", "model=smollm2_135m", "task.protocol=t5_first_token")
    model, tok, items = loaded(cfg, n)
    label_ids = glue.label_token_ids(tok, glue.SUBSETS[cfg.task.subset].labels)   # as glue.evaluate scores
    prompts = [x["prompt"] for x in items]
    ours, t_ours = best_of(lambda: glue.first_token_scores(model, tok, prompts, label_ids,
                                                           cfg.task.eval_batch_size), repeats)
    loop, t_loop = best_of(lambda: torch.cat([glue.first_token_scores(model, tok, [p], label_ids, 1)
                                              for p in prompts]), repeats)
    same = int((ours.argmax(-1) == loop.argmax(-1)).sum())
    tokens = sum(len(tok(p)["input_ids"]) for p in prompts)
    return (f"GLUE first token, {cfg.model.name}", len(prompts), tokens, t_ours, t_loop,
            f"same predictions {same}/{len(prompts)}, max |logit diff| {(ours - loop).abs().max():.1e}")


def bench_head(n, repeats):
    from lorabench.tasks import glue

    cfg = compose("task=glue_mini")
    model, tok, items = loaded(cfg, n)
    ours, t_ours = best_of(lambda: glue.head_predictions(model, tok, items, cfg.task.eval_batch_size,
                                                         cfg.task.max_length), repeats)
    loop, t_loop = best_of(lambda: sum((glue.head_predictions(model, tok, [x], 1, cfg.task.max_length)
                                        for x in items), []), repeats)
    same = sum(a == b for a, b in zip(ours, loop))
    tokens = sum(len(tok(x["text"])["input_ids"]) for x in items)
    return (f"GLUE head, {cfg.model.name}", len(items), tokens, t_ours, t_loop, f"same predictions {same}/{len(items)}")


def main(argv=None) -> None:
    from machine import limits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings per side")
    ap.add_argument("--n", type=int, default=64, help="questions / sentences per scorer")
    args = ap.parse_args(argv)
    rows = [f(args.n, args.repeats) for f in (bench_loglik, bench_first_token, bench_head)]
    device = "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    print(f"scoring on {device}; best of {args.repeats}; batched = lorabench's scorer, loop = one request per forward")
    print(f"{'scorer':34}{'requests':>9}{'tokens':>8}{'batched s':>11}{'loop s':>9}{'speed-up':>10}  check")
    for name, n, tokens, t_ours, t_loop, check in rows:
        print(f"{name:34}{n:>9}{tokens:>8}{t_ours:>11.2f}{t_loop:>9.2f}{t_loop / t_ours:>9.2f}x  {check}")
    print(f"physical reference: {limits()}")


if __name__ == "__main__":
    main()
