"""Training-loop speed: lorabench's `train()` vs a bare torch + peft loop vs Hugging Face's Trainer, in one run.

    python scripts/bench_train.py                    # SmolLM2-135M, LoRA r=8 on all 7 projections, arith_mini
    python scripts/bench_train.py --steps 32 --task gsm8k_mini --max-length 256

All three train the same peft LoRA model (fresh copy, same seed) on the same micro-batches in the same order
(lorabench's `micro_batch`, right-padded), with AdamW, gradient clipping at 1.0, warmup + cosine, fp32:
- bare    : `loss = model(**batch).loss; loss.backward(); clip; step` (the loop peft's examples write);
- Trainer : transformers.Trainer fed the same pre-collated batches in order (no logging, saving or eval);
- ours    : `lorabench.train.train` (Accelerate, the response-only LM head, per-step logging to a curve).
Each is timed over the whole call after a shared warm-up step; the best of `--repeats` is kept. Tokens are the
non-padding input tokens of the batches, the same count for all three. Targets (issue 13): ours >= 0.98x
bare, >= 1.1x Trainer. The machine's measured fp32 matmul rate is printed as the physical reference.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(args):
    from hydra import compose, initialize_config_dir

    import lorabench.config  # noqa: F401  registers the schema
    from lorabench import models, tasks
    from lorabench.data import tokenize

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={args.model}", f"task={args.task}", "logger=none",
                                           f"task.max_length={args.max_length}", f"trainer.max_steps={args.steps}",
                                           f"trainer.batch_size={args.batch_size}", "trainer.eval_every=0",
                                           "trainer.warmup_ratio=0.1", "trainer.max_grad_norm=1.0"])
    tok = models.load_tokenizer(cfg.model)
    data = tasks.family(cfg.task.family).load(cfg.task, tok)
    samples = tokenize(data.train, tok, cfg.task.max_length, cfg.model.kind)
    return cfg, tok, samples


def fresh_model(cfg):
    from peft import LoraConfig, get_peft_model

    from lorabench import models

    torch.manual_seed(0)
    model = models.load_model(cfg.model, None)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(cfg.model.target_modules)))


def batches(cfg, samples, pad_id):
    from lorabench.train import micro_batch, plan_steps

    per_epoch, steps = plan_steps(len(samples), cfg.trainer, 1)
    return [micro_batch(samples, cfg.trainer, 0, 1, 0, m, per_epoch, pad_id)[0] for m in range(steps)]


def optimizer_and_schedule(model, cfg, steps):
    from transformers import get_scheduler

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.trainer.lr)
    return opt, get_scheduler("cosine", opt, num_warmup_steps=math.ceil(0.1 * steps), num_training_steps=steps)


def bare(model, cfg, data):
    opt, sched = optimizer_and_schedule(model, cfg, len(data))
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for batch in data:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()   # a loop reports its loss


def trainer(model, cfg, data):
    from transformers import Trainer, TrainingArguments

    class InOrder(Trainer):   # the same batches in the same order: no shuffling
        def _get_train_sampler(self, *a, **k):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    args = TrainingArguments(output_dir="/tmp/lorabench-bench-trainer", per_device_train_batch_size=1,
                             max_steps=len(data), learning_rate=cfg.trainer.lr, lr_scheduler_type="cosine",
                             warmup_steps=math.ceil(0.1 * len(data)), max_grad_norm=1.0, optim="adamw_torch",
                             weight_decay=0.0, report_to=[], save_strategy="no", logging_strategy="no",
                             disable_tqdm=True, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                             remove_unused_columns=False)
    InOrder(model=model, args=args, train_dataset=data, data_collator=lambda items: items[0]).train()


def ours(model, cfg, data, samples, pad_id):
    from lorabench.cluster.distributed import make_accelerator
    from lorabench.train import train

    train(model, samples, [], cfg.trainer, seed=0, pad_id=pad_id, accelerator=make_accelerator(cfg))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--task", default="arith_mini")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)   # one loop here varies 17.5-20.3 s from run to run
    args = ap.parse_args(argv)

    cfg, tok, samples = setup(args)
    data = batches(cfg, samples, tok.pad_token_id)
    tokens = sum(int(b["attention_mask"].sum()) for b in data)
    loops = {"bare torch + peft": lambda m: bare(m, cfg, data),
             "transformers Trainer": lambda m: trainer(m, cfg, data),
             "lorabench train()": lambda m: ours(m, cfg, data, samples, tok.pad_token_id)}
    best = {name: float("inf") for name in loops}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            model = fresh_model(cfg)
            model(**data[0]).loss.backward()   # warm-up: allocator and kernels, outside the timing
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            loop(model)
            best[name] = min(best[name], time.perf_counter() - t)
    device = "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    print(f"model {args.model} + LoRA r=8 ({', '.join(cfg.model.target_modules)}) on {device}; {args.task}: "
          f"{len(data)} steps of {args.batch_size}, {tokens} tokens; best of {args.repeats}")
    print(f"{'loop':24}{'seconds':>10}{'tokens/s':>10}{'time / ours':>12}")
    for name, t in best.items():
        print(f"{name:24}{t:>10.2f}{tokens / t:>10.1f}{t / best['lorabench train()']:>11.2f}x")
    ratio_bare = best["bare torch + peft"] / best["lorabench train()"]
    ratio_hf = best["transformers Trainer"] / best["lorabench train()"]
    print(f"targets: >= 0.98x bare: {ratio_bare:.2f}x ({'met' if ratio_bare >= 0.98 else 'missed'}); "
          f">= 1.1x Trainer: {ratio_hf:.2f}x ({'met' if ratio_hf >= 1.1 else 'missed'})")
    if not torch.cuda.is_available():
        from machine import limits
        print(f"physical reference: {limits()}")


if __name__ == "__main__":
    main()
