"""EVA's commonsense protocol (arXiv 2410.07170v5 §3.3, Table 7): train jointly on the eight datasets' own training
splits ("qa_datasets"), score each by log-likelihood over answer words with EVA's own lm-eval tasks.

Training format (task.options.train_data=qa_datasets): ml-jku/EVA @a5ac24b src/prepare_data.py renders each train
row with its promptsource template `multiple_choice_simple` (promptsource_custom/templates/<dataset>/templates.yaml)
and trains on BOS + prompt + " " + answer word + EOS, loss on the answer word and EOS. Template quirks kept: every
field passes jinja's truncate(2048) (templates.py TEXT_VAR_LENGTH); ARC/OBQA list four answers (a missing one
renders empty; a fifth is dropped, and its gold answer word is then empty); PIQA says "correct solution".
EVA's run_train.sh filters samples longer than model_max_length (1024 for qa_datasets; the paper says "with
filtering"; the released script passes the flag as --whiten, so whether its runs filtered is UNVERIFIED).
prepare_data.load_data concatenates the eight sets (interleave=False) and the HF Trainer shuffles them; here the
joint set is shuffled with task.data_seed.

Scoring (task.protocol=eva): the custom lm-eval tasks (lm-evaluation-harness/lm_eval/tasks/custom_*/utils.py):
the question with its numbered options, ending "the correct answer is " (lower case, unlike training), choices
the answer words (answer1.., solution1/2, option1/2, ending1..4, false/true), lm-eval's target delimiter " ",
metric acc only. Splits as lm-eval's: ARC and OBQA test, the others validation.
"""
from __future__ import annotations

import random

TEXT_VAR_LENGTH = 2048   # promptsource_custom/templates.py: each field truncated to 2048 characters
TRAIN_END = "The correct answer is"
EVAL_END = "the correct answer is "


def truncate(value, length: int = TEXT_VAR_LENGTH, end: str = "...", leeway: int = 5) -> str:
    """jinja2's `truncate` filter with its defaults: words kept whole, '...' appended, 5 characters of leeway."""
    s = str(value)
    if len(s) <= length + leeway:
        return s
    return s[:length - len(end)].rsplit(" ", 1)[0] + end


def _four(texts: list[str]) -> list[str]:
    """The four answer slots of EVA's ARC/OBQA templates (a missing answer is empty, a fifth is dropped)."""
    return (list(texts) + [""] * 4)[:4]


def _numbered(stem: str, texts: list[str]) -> list[str]:
    return [f"{stem.capitalize()}{i}: {t}" for i, t in enumerate(texts, 1)]


def _fields(dataset: str, row: dict) -> tuple[str, list[str], str, list[str], int]:
    """(question line, option lines' texts, option stem, answer words, gold index) of one row."""
    if dataset == "boolq":
        return "", [], "", ["false", "true"], int(bool(row["answer"]))
    if dataset == "piqa":
        return row["goal"], [row["sol1"], row["sol2"]], "solution", ["solution1", "solution2"], int(row["label"])
    if dataset == "siqa":
        return (f"{row['context']} {row['question']}", [row["answerA"], row["answerB"], row["answerC"]], "answer",
                ["answer1", "answer2", "answer3"], int(row["label"]) - 1)
    if dataset == "hellaswag":
        return "", list(row["endings"]), "ending", [f"ending{i}" for i in range(1, 5)], int(row["label"])
    if dataset == "winogrande":
        return (row["sentence"], [row["option1"], row["option2"]], "option", ["option1", "option2"],
                int(row["answer"]) - 1)
    if dataset in ("arc_e", "arc_c", "obqa"):
        text = row["question_stem"] if dataset == "obqa" else row["question"]
        labels = list(row["choices"]["label"])
        return (text, _four(row["choices"]["text"]), "answer", [f"answer{i}" for i in range(1, 5)],
                labels.index(row["answerKey"].strip()))
    raise ValueError(f"unknown commonsense dataset {dataset!r}")


def _body(dataset: str, row: dict, cut, solution: bool) -> str:
    """The question and options (lines joined by '\\n'), every field passed through `cut`."""
    question, options, stem, words, _ = _fields(dataset, row)
    if dataset == "boolq":
        return (f"Passage: {cut(row['passage'])}\nAfter reading this passage, please answer the following question "
                f"with true or false, question: {cut(row['question'])}\nAnswer format: true/false")
    if dataset == "hellaswag":
        head = ("Please choose the correct ending to complete the given sentence: "
                f"{cut(row['activity_label'])}: {cut(row['ctx_a'])} {cut(row['ctx_b'].capitalize())}")
    elif dataset == "winogrande":
        head = f"Please choose the correct answer to fill in the blank to complete the given sentence: {cut(question)}"
    elif dataset == "siqa":
        head = f"Please choose the correct answer to the question: {cut(row['context'])} {cut(row['question'])}"
    else:
        what = "solution" if dataset == "piqa" and solution else "answer"
        head = f"Please choose the correct {what} to the question: {cut(question)}"
    lines = _numbered(stem, [cut(o) for o in options])
    return "\n".join([head, *lines, "Answer format: " + "/".join(words)])


def train_example(dataset: str, row: dict) -> dict:
    """A train row in EVA's training format: {'prompt', 'response'} (response = the gold answer word; the
    separating space is added by `joint_train`)."""
    *_, words, gold = _fields(dataset, row)
    prompt = f"{_body(dataset, row, truncate, solution=True)}\n{TRAIN_END}".strip()
    response = words[gold] if gold < len(words) else ""   # ARC's fifth answer: an empty answer word, as EVA's
    return {"prompt": prompt, "response": response}


def requests(dataset: str, row: dict) -> dict:
    """EVA's lm-eval multiple-choice requests for one row: one context, the answer words after ' '."""
    *_, words, gold = _fields(dataset, row)
    context = f"{_body(dataset, row, str, solution=False)}\n{EVAL_END}"
    return {"contexts": [context] * len(words), "continuations": [" " + w for w in words],
            "lengths": [len(w) for w in words], "gold": gold}


def separator(tokenizer) -> str:
    """How the answer word joins the prompt: EVA tokenizes prompt + " " + answer whole; ours tokenizes the two
    apart (data.tokenize_sft), so the space goes where the joint tokenization puts it (SentencePiece: a prefix
    of the answer's first piece, which a separate tokenization adds by itself)."""
    if tokenizer is None:
        return " "
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]   # noqa: E731
    return "" if ids("is") + ids("answer1") == ids("is answer1") else " "


def joint_train(rows: dict[str, list[dict]], seed: int, tokenizer=None, max_length: int | None = None) -> list[dict]:
    """{dataset: train rows} -> EVA's joint training set, long samples dropped, shuffled with `seed`."""
    sep = separator(tokenizer)
    out = []
    for dataset, ds in rows.items():
        for row in ds:
            ex = train_example(dataset, row)
            ex = {"prompt": ex["prompt"], "response": sep + ex["response"]}
            if tokenizer is not None and max_length is not None:
                n = len(tokenizer(ex["prompt"])["input_ids"]) + len(
                    tokenizer(ex["response"], add_special_tokens=False)["input_ids"]) + 1   # + EOS
                if n > max_length:
                    continue
            out.append(ex)
    random.Random(f"commonsense:{seed}:qa_datasets").shuffle(out)
    return out
