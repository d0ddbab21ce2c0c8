"""Generation speed: lorabench's batched generate vs `model.generate` one prompt at a time.

    python scripts/bench_generate.py                 # SmolLM2-135M, 64 GSM8K prompts (LoRA-GA's format), batch 64
    python scripts/bench_generate.py --batch-size 32 # the tasks' default eval_batch_size
    python scripts/bench_generate.py --prompts humaneval --n 32 --max-new-tokens 256

Ours: prompts sorted by length into batches, left padding, prefill in length groups, KV cache, and finished rows
retired from the batch (greedy.decode). On this CPU, MKL's sgemm takes about as long for 32 rows as for 64 (and
twice as long for 128), so a decode step of 64 rows costs what 32 cost: batch 64 is the fast setting here
(`task.eval_batch_size=64`), 32 the tasks' default. The baseline: `model.generate` per prompt. Both decode
greedily with the same max_new_tokens and the protocol's stop strings (GSM8K: LoRA-GA's "\nQ:" and "\n\n\n";
HumanEval: none), after one warm-up call each. Tokens are counted the same way for both: the completion's text,
cut at its stop string, re-tokenized. Prints a side-by-side table, the tokens/s ratio, how many completions are
identical (a batch's shape can flip a near-tie argmax), and the machine's limits.

Reference, this machine (2 CPU cores, idle): see the closing notes of issue 13 and README's Speed section.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(model_name: str):
    from hydra import compose, initialize_config_dir

    import lorabench.config  # noqa: F401  registers the schema
    from lorabench import models

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", [f"model={model_name}"])
    tok = models.load_tokenizer(cfg.model)
    model = models.load_model(cfg.model).eval()
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tok


def prompts_for(kind: str, n: int) -> tuple[list[str], list[str]]:
    """The prompts and their protocol's stop strings."""
    from lorabench import assets
    from lorabench.tasks import gsm8k

    if kind == "gsm8k":
        return [gsm8k.prompt(x["question"], "lora_ga") for x in assets.gsm8k_test()[:n]], gsm8k.STOPS["lora_ga"]
    return [p["prompt"] for p in assets.humaneval_problems()[:n]], []


@torch.no_grad()
def one_at_a_time(model, tok, prompts: list[str], max_new_tokens: int, stops: list[str]) -> list[str]:
    from lorabench.eval.generate import cut_at_stops

    out = []
    extra = dict(stop_strings=stops, tokenizer=tok) if stops else {}
    for p in prompts:
        enc = tok(p, return_tensors="pt").to(model.device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                             pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None, **extra)
        out.append(cut_at_stops(tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True), stops))
    return out


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main(argv=None) -> None:
    from lorabench.eval.generate import generate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2_135m", help="a configs/model name")
    ap.add_argument("--prompts", default="gsm8k", choices=["gsm8k", "humaneval"])
    ap.add_argument("--n", type=int, default=64, help="number of prompts")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args(argv)

    model, tok = load(args.model)
    prompts, stops = prompts_for(args.prompts, args.n)
    m = args.max_new_tokens

    def batched():
        return generate(model, tok, prompts, m, batch_size=args.batch_size, stop_strings=stops, show_progress=False)

    generate(model, tok, prompts[:2], 4, batch_size=2, stop_strings=stops, show_progress=False)    # warm-up
    one_at_a_time(model, tok, prompts[:1], 4, stops)
    ours, t_ours = timed(batched)
    loop, t_loop = timed(lambda: one_at_a_time(model, tok, prompts, m, stops))

    def count(texts):
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    n_ours, n_loop = count(ours), count(loop)
    same = sum(a == b for a, b in zip(ours, loop))
    device = "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    print(f"model {args.model} on {device}; {len(prompts)} {args.prompts} prompts, greedy, "
          f"max_new_tokens {m}, stop strings {stops}, KV cache on both sides")
    print(f"{'':38}{'prompts':>8}{'new tokens':>12}{'seconds':>10}{'tokens/s':>10}")
    for name, n_tok, t in ((f"lorabench generate (batch {args.batch_size})", n_ours, t_ours),
                           ("model.generate, one prompt at a time", n_loop, t_loop)):
        print(f"{name:38}{len(prompts):>8}{n_tok:>12}{t:>10.2f}{n_tok / t:>10.1f}")
    print(f"speed-up (tokens/s ratio): {(n_ours / t_ours) / (n_loop / t_loop):.2f}x")
    print(f"identical greedy completions: {same}/{len(prompts)}")
    if not torch.cuda.is_available():
        from machine import limits
        print(f"physical reference: {limits()}; one decode step reads every weight once "
              f"({sum(p.numel() for p in model.parameters()) * 4 / 1e9:.2f} GB in fp32)")


if __name__ == "__main__":
    main()
