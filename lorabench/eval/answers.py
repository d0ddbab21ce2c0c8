"""Final-answer extraction and comparison for math word problems (GSM8K protocols).

Handles thousands separators (1,234), signs, decimals, currency symbols ($, £, €), trailing units
("18 dollars", "5%") and answers that never appear (None, scored wrong).
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUM = r"-?[$£€]?\s?-?\d[\d,]*(?:\.\d+)?|-?[$£€]?\s?-?\.\d+"
_NUM_RE = re.compile(_NUM)


def normalize(text: str | None) -> str | None:
    """'$1,234.50' -> '1234.5'; '-0.0' -> '0'; None or no number -> None."""
    if text is None:
        return None
    m = _NUM_RE.search(text)
    if not m:
        return None
    s = re.sub(r"[\s$£€,]", "", m.group(0))
    neg = s.count("-") % 2 == 1
    s = s.replace("-", "")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if d == 0:
        return "0"
    d = -d if neg else d
    out = format(d.normalize(), "f")
    return out.rstrip("0").rstrip(".") if "." in out else out


def after_marker(text: str, marker: str) -> str | None:
    """The number right after the first `marker` (e.g. '####' or 'The answer is:'), else None."""
    i = text.find(marker)
    if i < 0:
        return None
    return normalize(text[i + len(marker):][:64])


def last_number(text: str) -> str | None:
    nums = _NUM_RE.findall(text)
    return normalize(nums[-1]) if nums else None


def reference(gsm8k_answer: str) -> str:
    """The gold number of a GSM8K solution ('... #### 1,234')."""
    return normalize(gsm8k_answer.split("####")[-1])


def same(pred: str | None, gold: str | None) -> bool:
    if pred is None or gold is None:
        return False
    try:
        return Decimal(pred) == Decimal(gold)
    except InvalidOperation:
        return pred == gold
