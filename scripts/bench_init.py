"""Init cost, lorabench vs peft, in one run on the same model and batches.

    python scripts/bench_init.py                       # SmolLM2-135M (packaged), 8 gsm8k_mini batches of 4
    python scripts/bench_init.py --repeat 2            # each time the fastest of 2 runs (the README's figures)
    python scripts/bench_init.py --model llama3_1_8b --batches 64 --batch-size 2   # on a GPU cluster

Every measurement runs in its own child process, with the imports done before its clock starts, so each
figure is that phase's own. Prints, per method, lorabench's and peft's init time and their ratio (target:
<= 1.0), LoRA-One's time over LoRA-GA's (the same gradient pass; target <= 1.0) in all and after that pass
(the part that differs, free of the pass's run-to-run spread), the peak memory of gradient
estimation (LoRA-GA, GoRA) beside one LoRA training step on the same batch (CUDA max allocated, or the
process RSS on a CPU with glibc's mmap threshold fixed so it is the live memory's; target <= 1.1x), and
gradient estimation over N batches beside N LoRA training steps (target <= 1.2x).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# lorabench adapter config -> the same method through peft's own API (None: peft does not have it)
PEFT_SAME = {"pissa_niter_4": "pissa_niter_4", "olora": "olora", "eva": "eva", "corda": "corda",
             "lora_ga_peft": "lora_ga", "pissa": "pissa", "mica": "mica", "kasa": "kasa"}
if torch.cuda.is_available():   # peft 0.21's LoftQ hard-codes "cuda"
    PEFT_SAME["loftq"] = "loftq"
ALL = ["lora", "pissa", "pissa_niter_4", "olora", "milora", "loftq", "lora_ga", "lora_ga_peft", "lora_one",
       "gora", "eva", "corda", "lora_sb", "nlora", "nlora_inttune", "loldu", "mica", "kasa"]
# each newer init against its nearest peer on the same batches (issue 25): time ratio, target none (a figure)
PEERS = {"lora_sb": ("lora_ga", "lora_one"), "nlora": ("pissa",), "nlora_inttune": ("pissa",), "loldu": ("pissa",),
         "mica": ("milora",), "kasa": ("milora",)}


def setup(args, adapter: str):
    from hydra import compose, initialize_config_dir

    import lorabench.config  # noqa: F401  registers the schema
    from lorabench import models, tasks
    from lorabench.data import collate, tokenize_sft

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", [f"model={args.model}", f"adapter={adapter}", f"adapter.r={args.r}",
                                 f"adapter.init_batches={args.batches}", f"adapter.init_batch_size={args.batch_size}",
                                 f"task.train_size={args.batches * args.batch_size}", "task.valid_size=0",
                                 f"task.max_length={args.max_length}"])
    tok = models.load_tokenizer(cfg.model)
    data = tasks.family(cfg.task.family).load(cfg.task, tok)
    samples = tokenize_sft(data.train, tok, cfg.task.max_length)
    bs = args.batch_size
    batches = [collate(samples[i:i + bs], tok.pad_token_id) for i in range(0, args.batches * bs, bs)]
    model = models.load_model(cfg.model)
    model._lorabench_targets = list(cfg.model.target_modules)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    return cfg, model, batches


def ours(cfg, model, batches):
    """lorabench's init; returns its report (the gradient pass's own time is in report.extra)."""
    from lorabench import adapters

    return adapters.init_adapter(model, cfg.adapter, batches)[1]


def peft_pipeline(cfg, model, batches, mode: str):
    """The method exactly as peft's documentation calls it."""
    from peft import get_peft_model

    from lorabench.adapters.common import lora_config

    extra = {}
    if mode == "eva":
        from peft import EvaConfig, initialize_lora_eva_weights

        o = cfg.adapter.options
        config = lora_config(model, cfg.adapter, "CAUSAL_LM", "eva",
                             eva_config=EvaConfig(rho=o.rho, tau=o.tau, use_label_mask=o.use_label_mask))
        peft_model = get_peft_model(model, config, low_cpu_mem_usage=True)
        initialize_lora_eva_weights(peft_model, batches, show_progress_bar=False)
        return peft_model
    if mode == "corda":
        from peft.tuners.lora.config import CordaConfig   # not exported at peft's top level (0.21)
        from peft.tuners.lora.corda import preprocess_corda

        config = lora_config(model, cfg.adapter, "CAUSAL_LM", "corda",
                             corda_config=CordaConfig(corda_method=cfg.adapter.options.method))

        @torch.no_grad()
        def run_model():   # peft's hook takes one unpadded sample per forward (squeeze(0)), as the official code
            for b in batches:
                for ids, mask in zip(b["input_ids"], b["attention_mask"].bool()):
                    model(input_ids=ids[mask][None], attention_mask=torch.ones_like(ids[mask])[None])
        preprocess_corda(model, config, run_model=run_model)
        return get_peft_model(model, config)
    if mode == "lora_ga":
        from peft import LoraGAConfig, preprocess_loraga

        o = cfg.adapter.options
        config = lora_config(model, cfg.adapter, "CAUSAL_LM", "lora_ga", lora_ga_config=LoraGAConfig(
            direction=o.direction, scale=o.scale, stable_gamma=o.stable_gamma))

        def train_step():
            for b in batches:
                model(**b).loss.backward()
        preprocess_loraga(model, config, train_step)
        return get_peft_model(model, config)
    if mode == "kasa":   # peft's KaSA (the same call as lorabench.adapters.peft_variants.kasa)
        from peft import KasaConfig

        o = cfg.adapter.options
        extra = {"kasa_config": KasaConfig(beta=o.beta, gamma=o.gamma)}
        mode = True
    if mode == "loftq":
        from peft import LoftQConfig

        o = cfg.adapter.options
        extra = {"loftq_config": LoftQConfig(loftq_bits=o.bits, loftq_iter=o.iters)}
    return get_peft_model(model, lora_config(model, cfg.adapter, "CAUSAL_LM", mode, **extra))


def train_step(cfg, model, batches):
    """One LoRA training step (forward + backward + AdamW) on the first batch: the memory reference."""
    return train_steps(cfg, model, batches[:1])


def train_steps(cfg, model, batches):
    """N LoRA training steps, one per batch (lorabench's loss on the response tokens, AdamW): the time reference
    for gradient estimation over the same N batches."""
    from lorabench.adapters.common import attach, lora_config
    from lorabench.train import loss_sum

    model = attach(model, lora_config(model, cfg.adapter, "CAUSAL_LM", True))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for b in batches:
        s, n = loss_sum(model, b)
        (s / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model


def gradients(cfg, model, batches):
    """Gradient estimation alone (lorabench.adapters.gradients.layer_gradients) over the same N batches."""
    from lorabench.adapters.common import attach, lora_config
    from lorabench.adapters.gradients import layer_gradients

    model = attach(model, lora_config(model, cfg.adapter, "CAUSAL_LM", True))
    return layer_gradients(model, batches)


def one_batch_grad(cfg, model, batches):
    """Gradient estimation of the same init on the first batch only (same batch as train_step)."""
    from lorabench import adapters

    return adapters.init_adapter(model, cfg.adapter, batches[:1])[0]


def child(args) -> dict:
    from lorabench.costs import measure

    import peft  # noqa: F401  imports outside the measured region, for both sides
    import scipy.linalg  # noqa: F401

    import lorabench.adapters  # noqa: F401

    cfg, model, batches = setup(args, args.adapter)
    fn = {"ours": ours, "train_step": train_step, "grad_1batch": one_batch_grad, "train_steps": train_steps,
          "gradients": gradients}.get(args.impl)
    torch.manual_seed(0)
    with measure() as cost:
        if fn is not None:
            out = fn(cfg, model, batches)
        else:
            out = peft_pipeline(cfg, model, batches, PEFT_SAME[args.adapter])
    grad_seconds = getattr(out, "extra", {}).get("grad_seconds")
    return {"seconds": cost.seconds, "peak_mb": cost.peak_mb, "device": cost.device, "grad_seconds": grad_seconds}


def measure_in_child(args, adapter: str, impl: str, memory: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", "--adapter", adapter, "--impl", impl, "--model", args.model,
           "--batches", str(args.batches), "--batch-size", str(args.batch_size), "--r", str(args.r),
           "--max-length", str(args.max_length)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if memory:   # a CPU peak RSS that is the live memory's, every run (times are not comparable then)
        # glibc otherwise raises its mmap threshold as large blocks are freed, and the same LoRA step's peak RSS
        # lands at 2.9 or 3.9 GB from run to run (measured); with a fixed small one every large tensor is its
        # own mapping, returned when freed (2.81 GB, every run), at the price of page faults (~1.5x the time).
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def fastest(runs: list[dict], key: str = "seconds") -> dict:
    ok = [m for m in runs if "error" not in m]
    return min(ok, key=lambda m: m[key]) if ok else runs[0]


def after_pass(runs: list[dict]) -> dict:
    """{"after_seconds": the fastest init time after its gradient pass}, for inits that report the pass."""
    after = [m["seconds"] - m["grad_seconds"] for m in runs if m.get("grad_seconds") is not None]
    return {"after_seconds": min(after)} if after else {}


def secs(m: dict | None) -> str:
    return "" if m is None else m["error"][:40] if "error" in m else f"{m['seconds']:.2f}s"


def mb(m: dict) -> str:
    return m["error"][:40] if "error" in m else f"{m['peak_mb']:.0f} MB"


def ratio(a: dict | None, b: dict | None, key: str = "seconds") -> str:
    return f"{a[key] / b[key]:.2f}x" if a and b and "error" not in a and "error" not in b else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--adapters", nargs="*", default=ALL)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="time everything N times, interleaved, each in a fresh "
                    "process, and keep each one's fastest: on 2 cores one run of the same init took 40 to 60 s here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--adapter", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    t0 = time.perf_counter()
    dev = "cuda (peak = max allocated)" if torch.cuda.is_available() else "cpu (peak = process RSS, weights included)"
    print(f"# init time on {args.model}, {args.batches} batches x {args.batch_size}, max_length {args.max_length}, "
          f"r={args.r}; device: {dev}; fastest of {args.repeat}")
    print(f"{'adapter':14} {'lorabench':>10} {'peft':>10} {'ratio':>6}   (target: ratio <= 1.0)")

    def best(adapter, *impls, memory=False):   # the impls' runs interleaved, so drift reaches each alike
        n = 1 if memory else args.repeat        # the memory figures are the same every run
        runs = [[measure_in_child(args, adapter, impl, memory) for impl in impls] for _ in range(n)]
        return [fastest(list(r)) | after_pass(list(r)) for r in zip(*runs)]

    mine = {}
    for a in args.adapters:
        mine[a], theirs = best(a, "ours", "peft") if a in PEFT_SAME else (*best(a, "ours"), None)
        print(f"{a:14} {secs(mine[a]):>10} {secs(theirs) if theirs else '(none)':>10} {ratio(mine[a], theirs):>6}",
              flush=True)
    if "lora_one" in mine and "lora_ga" in mine:
        print(f"{'lora_one / lora_ga, the same gradient pass':44} {ratio(mine['lora_one'], mine['lora_ga']):>6}"
              "   (target <= 1.0)")
        one, ga = mine["lora_one"].get("after_seconds"), mine["lora_ga"].get("after_seconds")
        if one and ga:   # what differs between the two, without the shared pass's run-to-run spread
            print(f"{'  after the gradient pass, on its gradients':44} {one / ga:>5.2f}x   ({one:.2f}s vs {ga:.2f}s)")
    for a, peers in PEERS.items():
        for peer in peers:
            if a in mine and peer in mine:
                print(f"{a + ' / ' + peer:44} {ratio(mine[a], mine[peer]):>6}", flush=True)

    print("\n# gradient estimation peak memory vs one LoRA training step, same first batch (target <= 1.1x)")
    step, = best("lora", "train_step", memory=True)
    print(f"{'lora step':14} {mb(step):>10}")
    for a in ("lora_ga", "gora"):
        if a in args.adapters:
            g, = best(a, "grad_1batch", memory=True)
            print(f"{a:14} {mb(g):>10} {ratio(g, step, 'peak_mb'):>6}", flush=True)

    print(f"\n# gradient estimation time vs {args.batches} LoRA training steps on the same batches (target <= 1.2x)")
    steps, grads = best("lora", "train_steps", "gradients")
    print(f"{'lora steps':14} {secs(steps):>10}\n{'gradients':14} {secs(grads):>10} {ratio(grads, steps):>6}")
    print(f"\n(total {time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
