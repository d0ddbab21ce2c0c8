"""The papers' own GSM8K scorers, quirks included, implemented from their code (not copied).

Our `answers` module scores a normalized final number ("1,234" is 1234, "7.50" is 7.5, "-5" is -5). The papers'
scripts do not, and their published numbers come from their scripts, so a record carries both: `accuracy`
(normalized) and `accuracy_official` (this module). Each function takes the completion and the gold answer
as the official script sees it: the dataset's raw answer text (GSM8K's `answer`, worked solution ending
"#### N", as the script reads it, not our normalized number), and returns whether the script would count it
correct.

- lora_ga  : Outsider565/LoRA-GA reproduce/eval_gsm8k.py `extract_num`: the first `####\\s*(\\d+)`, commas
             dropped, int; no match (a missing marker, or a negative number) is 0, for the prediction *and* the
             gold. So "#### 1,234" reads 1, "#### -5" reads 0, "#### 7.5" reads 7, and a completion without
             the marker is right whenever the gold reads 0. The gold is the raw GSM8K answer through the same
             function (reproduce/data.py load_gsm8k: y = e["answer"]; eval_gsm8k.py: gt = extract_num(y)), so
             "#### 2,125" reads 2 (14 of the 1319 test golds carry a comma; 2 more are negative and read 0):
             there a correct "#### 2125" is wrong and "#### 2" right, as in the paper's numbers.
- metamath : GraphPKU/PiSSA inference/acc_gsm8k.py `extract_answer_number` (MetaMath's eval_gsm8k.py, which
             EVA also uses): the text after the *last* "The answer is: ", its first `[-+]?\\d*[.,/]?\\d+`, a
             fraction evaluated, then Python's round() (half to even: 2.5 -> 2); "1,234,567" reads 1234. No
             marker or no number is wrong. The gold: meta-math/MetaMath eval_gsm8k.py (@fe667b1)
             int(answer.split('#### ')[1].replace(',', '')), compared as a float (PiSSA's stored "answer").
- lm_eval  : EleutherAI/lm-evaluation-harness lm_eval/tasks/gsm8k/gsm8k.yaml (commit 0391928), strict-match:
             the first `#### (-?[0-9.,]+)` ("[invalid]" without one), then exact_match after deleting ",",
             "$" and everything up to "#### " from prediction and reference (doc_to_target: the raw answer),
             case-insensitive. A string
             comparison: "7.50" is not "7.5" and "18." is not "18".
"""
from __future__ import annotations

import re
from fractions import Fraction

_LORA_GA = re.compile(r"####\s*(\d+)")
_METAMATH_NUM = re.compile(r"[\-+]?\d*[\.,/]?\d+")
_LM_EVAL = re.compile(r"#### (\-?[0-9\.\,]+)")
_LM_EVAL_IGNORE = (",", r"\$", r"(?s).*#### ")


def _lora_ga_num(text: str) -> int:
    m = _LORA_GA.search(text)
    try:
        return int((m.group(1) if m else "").replace(",", ""))
    except ValueError:
        return 0


def lora_ga(completion: str, gold_raw: str) -> bool:
    return _lora_ga_num(completion) == _lora_ga_num(gold_raw)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _metamath_num(completion: str) -> int | None:
    parts = completion.split("The answer is: ")
    if len(parts) < 2:
        return None
    m = _METAMATH_NUM.search(parts[-1].strip())
    if not m:
        return None
    s = m.group()
    if "/" in s:
        num, den = s.split("/")[0], s.split("/")[1]
        if not (_is_number(num) and _is_number(den)):
            return None
        if den == "0":
            return round(float(num.replace(",", "")))
        frac = Fraction(s.replace(",", ""))
        return round(float(frac.numerator / frac.denominator))
    value = float(s.replace(",", ""))
    return None if value == float("inf") else round(value)


def _metamath_gold(gold_raw: str) -> float:
    """MetaMath eval_gsm8k.py: the text after the first '#### ', commas dropped, int (GSM8K's golds all are)."""
    text = gold_raw.split("#### ")[1].replace(",", "")
    try:
        return float(int(text))
    except ValueError:   # not a GSM8K gold (the script would stop here); a number still compares
        return float(text)


def metamath(completion: str, gold_raw: str) -> bool:
    pred = _metamath_num(completion)
    return pred is not None and float(pred) == _metamath_gold(gold_raw)


def _lm_eval_clean(s: str) -> str:
    for pattern in _LM_EVAL_IGNORE:
        s = re.sub(pattern, "", s)
    return s.lower()


def lm_eval(completion: str, gold_raw: str) -> bool:
    found = _LM_EVAL.findall(completion)
    pred = found[0] if found else "[invalid]"
    return _lm_eval_clean(pred) == _lm_eval_clean(gold_raw)


SCORERS = {"lora_ga": lora_ga, "metamath": metamath, "lm_eval": lm_eval}


# ---- T5 GLUE: GoRA's label generation ----------------------------------------------------------------
# hhnqqq/MyTransformers scripts/gora/t5_test.py (commit 7ca92974eea54c34ad6f4015bd0adbbcd182f988), read, not
# copied: `model.generate(input_ids, max_length=32)` (the model's default: greedy), each output decoded with
# skip_special_tokens=True, then the prediction is the label whose word *equals* the decoded text, or -1 when
# no word does; the gold is the label whose word equals its own decoded target. Accuracy compares the two
# integers, so a -1 is always wrong. The script's strip().lower() comparison (compute_accuracy) is only reached
# for tasks without a label map (none of GLUE's), so there is no stripping, lowercasing or punctuation removal:
# "equivalent." , "Equivalent", "equivalent " and "equivalent equivalent" all count wrong, as does "".

def gora_t5_label(generation: str, label_words) -> int:
    """The index of the label word the decoded generation equals exactly, or -1 (counted wrong)."""
    return next((i for i, word in enumerate(label_words) if generation == word), -1)


# ---- T5 GLUE: LoRA-GA's first-token comparison -------------------------------------------------------
# Outsider565/LoRA-GA reproduce/utils.py `compute_metrics` (@89af7de), read, not copied: over the whole eval set,
# U = the distinct gold first-token ids; a sample is right when the first-position logit of its gold token is
# strictly greater than the logit of token sum(U) - gold. With two labels that token is the other label (a tie
# counts wrong); with three (MNLI) it is the sum of the other two ids, an unrelated token: the code's own comment
# says it suits binary tasks only, and we reproduce it as it runs. A flipped id outside the vocabulary made the
# script crash; here that sample counts wrong and `lora_ga_flipped_ids` reports it.

def lora_ga_flipped_ids(gold_ids: list[int]) -> dict[int, int]:
    """gold first-token id -> the id its logit is compared with."""
    total = sum(set(gold_ids))
    return {g: total - g for g in set(gold_ids)}


def lora_ga_first_token_correct(gold_logit: float, flipped_logit: float | None) -> bool:
    return flipped_logit is not None and gold_logit > flipped_logit
