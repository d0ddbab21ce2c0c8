"""MATH final answers: the boxed gold answer, and extraction + normalization for two scoring protocols.

Written from the behaviour of the official scripts, which were read, not copied:
- metamath: meta-math/MetaMath eval_math.py + util.py @fe667b1 (the Hendrycks MATH `is_equiv`), used unchanged
  by GraphPKU/PiSSA inference/acc_math.py @86d7944 (utils/test_acc.py at HEAD 87f4db6) and by ml-jku/EVA
  eval_math.py + src/utils.py @e047fe4. The prediction is the text after the LAST "The answer is: "; both
  strings go through one string normalization and are compared for equality.
- minerva: EleutherAI/lm-evaluation-harness lm_eval/tasks/minerva_math/utils.py @4785623 (Lewkowycz et al.
  2022, appendix D): "Final Answer: The final answer is X. I hope it is correct." and `normalize_final_answer`.
  lm-eval's exact_match then compares with sympy (parse_latex, needs antlr4 4.11, absent here); this module
  compares the normalized strings, so "0.5" vs "\\frac{1}{2}" counts wrong here where lm-eval may count it right.
"""
from __future__ import annotations

import re

ANSWER_MARKER = "The answer is: "      # MetaMath's split string, trailing space included


# ---- gold: the last \boxed{...} of a MATH solution ---------------------------------------------------

def last_boxed(text: str) -> str | None:
    """The last '\\boxed{...}' (or, with no \\boxed at all, '\\fbox{...}') of `text`, braces matched, nested
    ones included; None when there is none or its braces never close (Hendrycks' last_boxed_only_string)."""
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return None


def boxed_answer(solution: str) -> str | None:
    """The gold answer as MetaMath reads it: the inside of the last \\boxed{...}; None when that box is not
    written '\\boxed{' (MetaMath's remove_boxed returns None, and such a problem can never be scored right)."""
    box = last_boxed(solution)
    if box is None or not box.startswith("\\boxed{") or not box.endswith("}"):
        return None
    return box[len("\\boxed{"):-1]


def boxed_answer_lm_eval(solution: str) -> str | None:
    """lm-eval's reading: also '\\boxed 5' (no braces: up to the next '$')."""
    if "\\boxed " in solution:
        return solution.split("\\boxed ")[-1].split("$")[0]
    return boxed_answer(solution)


# ---- metamath ---------------------------------------------------------------------------------------

def metamath_extract(completion: str) -> str | None:
    """The text after the last 'The answer is: ', up to the first '.\\n', stripped, one final '.' dropped;
    None when the marker is missing (MetaMath counts it wrong and lists it as invalid)."""
    if ANSWER_MARKER not in completion:
        return None
    ans = completion.split(ANSWER_MARKER)[-1].split(".\n")[0].strip()
    if ans.endswith("."):
        ans = ans[:-1]
    return ans.strip()


class _Crash(Exception):
    """Where the official normalization raises (and is_equiv falls back to comparing the raw strings)."""


def _units(s: str) -> str:
    # '\text{ ' is taken to start units on the right: keep what precedes it. Twice: the official asserts.
    if "\\text{ " not in s:
        return s
    parts = s.split("\\text{ ")
    if len(parts) != 2:
        raise _Crash
    return parts[0]


def _sqrt(s: str) -> str:
    # \sqrt3 -> \sqrt{3}: one character only; a trailing '\sqrt' with nothing after it raises (IndexError).
    pieces = s.split("\\sqrt")
    out = pieces[0]
    for p in pieces[1:]:
        if not p:
            raise _Crash
        out += "\\sqrt" + (p if p[0] == "{" else "{" + p[0] + "}" + p[1:])
    return out


def _fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{72} -> \frac{1}{72}; a '\frac' with one character after it leaves the
    # whole string as it was, with none after it raises.
    pieces = s.split("\\frac")
    out = pieces[0]
    for p in pieces[1:]:
        if not p:
            raise _Crash
        if p[0] == "{":
            out += "\\frac" + p
        elif len(p) < 2:
            return s
        elif p[1] != "{":
            out += "\\frac{" + p[0] + "}{" + p[1] + "}" + p[2:]
        else:
            out += "\\frac{" + p[0] + "}" + p[1:]
    return out


def _slash(s: str) -> str:
    # 'a/b' with integers a, b -> \frac{a}{b}; written otherwise ('01/2') unchanged; one '/' between
    # non-integers ('\pi/2') raises: the official catches only the assertion, not int()'s ValueError.
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        raise _Crash from None
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _guarded(step, s: str, strict: bool) -> str:
    try:
        return step(s)
    except _Crash:
        if strict:
            raise
        return s


def metamath_normalize(s: str, strict: bool = False) -> str:
    """MetaMath's strip_string, step by step in its order. strict: raise _Crash where the official raises;
    otherwise a step that would raise leaves the string as it was."""
    for old in ("\n", "\\!"):
        s = s.replace(old, "")
    s = s.replace("\\\\", "\\").replace("tfrac", "frac").replace("dfrac", "frac")
    for old in ("\\left", "\\right", "^{\\circ}", "^\\circ", "\\$"):
        s = s.replace(old, "")
    s = _guarded(_units, s, strict)
    s = s.replace("\\%", "").replace("\\%", "")   # twice, as the official does: '\\%%' -> '\\%' -> ''
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    lhs, eq, rhs = s.partition("=")
    if eq and "=" not in rhs and len(lhs) <= 2:   # 'x = 5', 'k=3' -> the value (spaces still count here)
        s = rhs
    s = _guarded(_sqrt, s, strict)
    s = s.replace(" ", "")
    s = _guarded(_fracs, s, strict)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _guarded(_slash, s, strict)


def metamath_equiv(pred: str | None, gold: str | None, official: bool = False) -> bool:
    """Equal after normalization. official: where either normalization raises, compare the raw strings
    (MetaMath's is_equiv); otherwise each raising step is skipped."""
    if pred is None or gold is None:
        return False
    try:
        return metamath_normalize(pred, strict=official) == metamath_normalize(gold, strict=official)
    except _Crash:
        return pred == gold


# ---- minerva ----------------------------------------------------------------------------------------

_END = "I hope it is correct."
# The first 'Final Answer: The final answer is' whose line goes on, lazily, to any one character, ' I hope it is
# correct' and any one character: lm-eval's pattern leaves both dots unescaped, and without DOTALL the answer
# cannot span lines. Kept as the spec, dots included: '... is $5$. I hope it is correct!' reads '$5$'.
_FINAL = re.compile(r"Final Answer: The final answer is(.*?). I hope it is correct.")

# Lewkowycz et al. (2022) appendix D, as lm-eval lists them: replaced in this order, then removed in this order.
SUBSTITUTIONS = ((r"an ", ""), (r"a ", ""), (r".$", "$"), (r"\$", ""), (r"\ ", ""), (r" ", ""),
                 (r"mbox", "text"), (r",\text{and}", ","), (r"\text{and}", ","), (r"\text{m}", r"\text{}"))
REMOVED = ("square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", r"\ldots", "sue",
           "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals",
           "edges", "students", "childrentickets", "multiples", r"\text{s}", r"\text{.}", "\\text{\ns}",
           r"\text{}^2", r"\text{}^3", "\\text{\n}", r"\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;",
           r",\!", "{,}", '"', r"\dots")


def minerva_extract(completion: str) -> str | None:
    # lm-eval appends the end phrase, yet ' I hope it is correct' must still follow the answer and one character:
    # '... is $5$' or '... is $5$.' alone reads nothing (invalid), '... is $5$ ' reads '$5'.
    m = _FINAL.search(completion + _END)
    return m.group(1).strip() if m else None


def minerva_normalize(s: str) -> str:
    """Minerva's normalize_final_answer: the last '=' side, the substitutions and removals above (substrings
    anywhere: 'ft' goes from '\\left' too), the first $...$ kept, \\text/\\textbf/\\overline/\\boxed unwrapped,
    \\fracab and \\sqrta shorthand braced, '$' dropped, '1,000' -> '1000'."""
    s = s.split("=")[-1]
    for old, new in SUBSTITUTIONS:
        s = s.replace(old, new)
    for old in REMOVED:
        s = s.replace(old, "")
    s = re.sub(r".*?\$(.*?)\$.*", r"$\1$", s)
    for cmd in ("text", "textbf", "overline"):
        s = re.sub(r"\\" + cmd + r"\{(.*?)\}", r"\1", s)
    s = re.sub(r"\\boxed\{(.*)\}", r"\1", s)
    s = re.sub(r"frac([^{])(.)", r"frac{\1}{\2}", s)
    s = re.sub(r"sqrt([^{])", r"sqrt{\1}", s)
    s = s.replace("$", "")
    if s.replace(",", "").isdigit():
        s = s.replace(",", "")
    return s


def minerva_gold(solution: str) -> str | None:
    box = boxed_answer_lm_eval(solution)
    return None if box is None else minerva_normalize(box)


def minerva_equiv(pred: str | None, gold: str | None) -> bool:
    """pred: the extracted answer (normalized here); gold: already normalized (minerva_gold)."""
    if pred is None or gold is None:
        return False
    return minerva_normalize(pred).strip() == gold.strip()
