"""MATH: answer extraction and normalization (expected values worked out from MetaMath's util.py/eval_math.py and
lm-eval minerva_math/utils.py), the offline failure of the hub task, the mini split, scoring through evaluate,
and the paper experiments' settings."""
import pytest

from conftest import compose
from lorabench.errors import ConfigError, OfflineError
from lorabench.eval import math_answers as ma
from lorabench.tasks import math as mt


def mm(pred, gold, official=True):
    return ma.metamath_equiv(ma.metamath_extract(pred), gold, official=official)


# ---- gold: the last \boxed{} with nested braces ------------------------------------------------------------

def test_boxed_answer_matches_nested_braces_and_takes_the_last_box():
    sol = r"First $\boxed{2}$, then $x = \boxed{\frac{1}{\sqrt{2}}}$."
    assert ma.boxed_answer(sol) == r"\frac{1}{\sqrt{2}}"
    assert ma.boxed_answer(r"so \boxed{\left( 3, \frac{\pi}{2} \right)}.") == r"\left( 3, \frac{\pi}{2} \right)"
    assert ma.boxed_answer("no box here") is None
    assert ma.boxed_answer(r"\boxed{\frac{1}{2}") is None          # never closes
    assert ma.boxed_answer(r"\fbox{3}") is None                     # MetaMath's remove_boxed wants '\boxed{'
    assert ma.boxed_answer_lm_eval(r"is $\boxed 5$.") == "5"        # lm-eval's '\boxed ' form


# ---- metamath: extraction ----------------------------------------------------------------------------------

@pytest.mark.parametrize("completion, expected", [
    (r"So $\boxed{\frac{1}{2}}$." + "\nThe answer is: \\frac{1}{2}", r"\frac{1}{2}"),
    ("The answer is: 1,000", "1,000"),
    ("The answer is: 3\nHmm. The answer is: 4", "4"),                 # several markers: the last wins
    ("The answer is: 5.\nBelow is more text", "5"),                    # up to the first '.\n'
    ("The answer is: 2.5.", "2.5"),                                    # one final '.' dropped
    ("The answer is 5", None),                                         # the marker has a colon and a space
    ("no marker at all", None),
])
def test_metamath_extract(completion, expected):
    assert ma.metamath_extract(completion) == expected


# ---- metamath: normalization and equality ------------------------------------------------------------------

@pytest.mark.parametrize("pred, gold, same", [
    ("The answer is: \\frac{1}{2}", r"\frac{1}{2}", True),
    ("The answer is: 1,000", "1000", False),            # no thousands separator handling in strip_string
    ("The answer is: 1,000", r"1,\!000", True),         # '\!' removed from the gold: '1,000' both
    ("The answer is: \\dfrac{3}{4}", r"\frac34", True),  # dfrac -> frac; \frac34 -> \frac{3}{4}
    ("The answer is: 5\\text{ cm}", "5", True),          # '\text{ ' starts units: dropped
    ("The answer is: 5 \\text{cm}", "5", False),         # no space after the brace: kept
    ("The answer is: 30^\\circ", r"30^{\circ}", True),   # degrees removed both ways
    ("The answer is: 0.5", r"\frac12", True),            # the one decimal rewritten: 0.5 -> \frac{1}{2}
    ("The answer is: .5", r"\frac{1}{2}", True),         # '.5' -> '0.5' -> \frac{1}{2}
    ("The answer is: 0.25", r"\frac{1}{4}", False),      # only 0.5 is
    ("The answer is: 1/2", r"\frac{1}{2}", True),        # integer a/b -> \frac{a}{b}
    ("The answer is: -5", "-5", True),
    ("The answer is: -\\frac{1}{2}", r"-\frac{1}{2}", True),
    ("The answer is: -1/2", r"-\frac{1}{2}", False),     # -1/2 -> \frac{-1}{2}, not -\frac{1}{2}
    ("The answer is: x = 5", "5", True),                 # one '=' with at most 2 chars before it ('x ')
    ("The answer is: x=5", "5", True),
    ("The answer is: xy = 5", "5", False),               # 'xy ' is 3 characters
    ("The answer is: \\$18.90", "18.90", True),          # escaped dollar removed
    ("The answer is: $18.90$", "18.90", False),          # a bare '$' is not
    ("The answer is: 25\\%", "25", True),
    ("The answer is: \\left( 3, \\frac{\\pi}{2} \\right)", r"(3,\frac{\pi}{2})", True),
    ("The answer is: \\sqrt3", r"\sqrt{3}", True),
])
def test_metamath_equivalence(pred, gold, same):
    assert mm(pred, gold) is same


def test_metamath_official_falls_back_to_raw_strings_where_its_normalization_raises():
    # '(\pi/2)' has one '/' between non-integers: int('(\pi') raises ValueError, which MetaMath's fix_a_slash_b
    # does not catch, so is_equiv compares the raw strings: '\left(\pi/2\right)' != '(\pi/2)'.
    pred, gold = "The answer is: \\left(\\pi/2\\right)", r"(\pi/2)"
    assert mm(pred, gold, official=True) is False
    assert mm(pred, gold, official=False) is True       # accuracy: the raising step skipped
    assert mm("The answer is: \\pi/2", r"\pi/2", official=True) is True   # raw strings equal
    with pytest.raises(ma._Crash):
        ma.metamath_normalize(r"5\text{ m}\text{ s}", strict=True)   # '\text{ ' twice: the official asserts


# ---- minerva -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("completion, expected", [
    ("...\nFinal Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", r"$\frac{1}{2}$"),
    ("Final Answer: The final answer is $1$. I hope it is correct.\n"
     "Final Answer: The final answer is $2$. I hope it is correct.", "$1$"),            # the first wins
    ("Final Answer: The final answer is $5$. I hope it is correct", "$5$"),           # end phrase appended
    ("Final Answer: The final answer is $5$.", None),   # ' I hope' must still follow: invalid in lm-eval too
    ("The answer is: 5", None),
])
def test_minerva_extract(completion, expected):
    assert ma.minerva_extract(completion) == expected


@pytest.mark.parametrize("raw, normalized", [
    ("$1,000$", "1000"),                      # digits with commas
    (r"1,\!000", "1000"),                     # ',\!' removed
    (r"5\text{ cm}", "5"),                    # space, then 'cm', then the empty '\text{}' removed
    (r"30^\circ", "30"),
    ("30 degrees", "30"),
    ("x = 5", "5"),                           # the last side of '='
    ("-5", "-5"),
    (r"\frac12", r"\frac{1}{2}"),
    ("0.5", "0.5"),                           # no decimal rewriting
    (r"\dfrac{1}{2}", r"\dfrac{1}{2}"),       # no dfrac rewriting
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\text{(E)}", "(E)"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"\le(3,\frac{\pi}{2}\right)"),   # 'ft' removed from '\left'
])
def test_minerva_normalize(raw, normalized):
    assert ma.minerva_normalize(raw) == normalized


def test_minerva_equivalence_is_on_normalized_strings():
    gold = ma.minerva_gold(r"So the answer is $\boxed{\frac{1}{2}}$.")
    say = "Final Answer: The final answer is ${}$. I hope it is correct.".format
    assert gold == r"\frac{1}{2}"
    assert ma.minerva_equiv(ma.minerva_extract(say(r"\frac12")), gold)
    assert not ma.minerva_equiv(ma.minerva_extract(say("0.5")), gold)          # sympy would say equal
    assert not ma.minerva_equiv(ma.minerva_extract(say(r"\dfrac{1}{2}")), gold)
    assert not ma.minerva_equiv(None, gold)


# ---- the task ----------------------------------------------------------------------------------------------

def test_hub_task_fails_fast_offline_naming_the_mini_variant(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="task=math_mini"):
        mt.load(compose("task=math").task)


def test_mini_splits_are_disjoint_and_test_on_math500():
    cfg = compose("task=math_mini", "task.train_size=40", "task.valid_size=5", "task.eval_size=10").task
    data = mt.load(cfg)
    assert (len(data.train), len(data.valid), len(data.test)) == (40, 5, 10)
    train, valid, test = ({x["prompt"] for x in split} for split in (data.train, data.valid, data.heldout))
    assert not (train & valid or train & test or valid & test)
    _, m500 = mt._packaged()
    assert {mt.prompt(p, "metamath") for p in m500[:10]} == {x["prompt"] for x in data.test}   # evaluation prompts
    assert {mt.train_prompt(p, "metamath") for p in m500[:10]} == test                          # held-out loss
    assert not train & {mt.train_prompt(p, "metamath") for p in m500}      # none of MATH-500 is trained on
    first = data.test[0]
    assert first["gold"] == r"\left( 3, \frac{\pi}{2} \right)" and data.heldout[0]["response"].endswith(
        "The answer is: " + first["gold"] + "\n")
    assert all(x["gold"] for x in data.valid_eval) and "mini split" in data.source["train"]


def test_mini_keeps_only_training_examples_that_fit_max_length():
    cfg = compose("task=math_mini", "task.train_size=20", "task.valid_size=2", "task.eval_size=2",
                  "task.max_length=120").task
    words = lambda text: {"input_ids": text.split()}   # noqa: E731  a stand-in tokenizer: one id per word
    data = mt.load(cfg, words)
    assert all(len((x["prompt"] + x["response"]).split()) < 120 for x in data.train + data.valid)


def test_evaluate_scores_both_protocols(monkeypatch):
    outs = {"metamath": ["Thus $\\boxed{4}$.\nThe answer is: 4", "The answer is: 0.5", "I give up"],
            "minerva": [" $\\boxed{4}$.\nFinal Answer: The final answer is $4$. I hope it is correct.",
                        "Final Answer: The final answer is $0.5$. I hope it is correct.", "I give up"]}
    sols = [r"so $\boxed{4}$", r"is $\boxed{\frac{1}{2}}$", r"$\boxed{7}$"]
    for protocol in mt.PROTOCOLS:
        monkeypatch.setattr(mt, "generate", lambda model, tok, prompts, *a, **k: outs[protocol][:len(prompts)])
        cfg = compose("task=math_mini", f"task.protocol={protocol}").task
        test = [{"prompt": "p", "gold": mt.gold(s, protocol)} for s in sols]
        res = mt.evaluate(None, None, test, cfg)
        want = 2 / 3 if protocol == "metamath" else 1 / 3      # minerva: 0.5 is not the string \frac{1}{2}
        assert res["values"]["accuracy"] == pytest.approx(want) and res["n"] == 3
        assert res["values"]["accuracy_boxed"] == pytest.approx(1 / 3)
        assert res["samples"][2]["pred"] is None


def test_prompts_and_responses_per_protocol():
    assert mt.prompt("What is 1+1?", "metamath").endswith("### Instruction:\nWhat is 1+1?\n\n### Response: "
                                                          "Let's think step by step.")
    assert mt.prompt("What is 1+1?", "minerva") == "Problem:\nWhat is 1+1?\n\nSolution:"
    assert mt.response("1+1=2.", "2", "metamath") == "1+1=2.\nThe answer is: 2\n"
    assert mt.train_prompt("What is 1+1?", "metamath").endswith("### Instruction:\nWhat is 1+1?\n\n### Response:")
    resp = mt.response("1+1=2.", "2", "minerva")
    assert ma.minerva_extract(resp) == "$2$"


def test_subset_options_and_non_causal_models_are_refused():
    for overrides, message in [(["task.subset=algebra"], "subset"), (["+task.options.temperature=0.5"],
                               "unknown task.options"), (["model=t5_base"], "causal LM")]:
        cfg = compose("task=math_mini", *overrides)
        with pytest.raises(ConfigError, match=message):
            mt.check(cfg.task, cfg.model)   # the family's part of config.validate, without its heavy imports


# ---- the paper experiments ---------------------------------------------------------------------------------

def test_pissa_math_trains_as_pissa_gsm8k_and_decodes_as_the_official_script():
    math_cfg, gsm = compose("experiment=pissa/llama2_math"), compose("experiment=pissa/llama2_gsm8k")
    for key in ("model", "adapter", "trainer"):
        assert math_cfg[key] == gsm[key]
    t = math_cfg.task
    assert (t.name, t.protocol, t.train_size, t.max_length, t.max_new_tokens) == ("math", "metamath", 100000, 512,
                                                                                  1024)
    assert (math_cfg.adapter.r, math_cfg.adapter.alpha) == (128, 128)
    mt.check(math_cfg.task, math_cfg.model)


def test_eva_math_trains_as_eva_gsm8k_and_decodes_as_the_official_script():
    math_cfg, gsm = compose("experiment=eva/llama2_math"), compose("experiment=eva/llama2_gsm8k")
    for key in ("model", "adapter", "trainer"):
        assert math_cfg[key] == gsm[key]
    t = math_cfg.task
    assert (t.protocol, t.train_size, t.max_length, t.max_new_tokens) == ("metamath", 395000, 512, 2048)
    mt.check(math_cfg.task, math_cfg.model)


def test_paper_numbers():
    from lorabench.report import paper_tables as pt

    assert pt.paper_number("pissa/llama2_math", "pissa") == 7.47
    assert pt.paper_number("pissa/llama2_math", "lora_gaussian") == 5.50
    assert pt.paper_number("eva/llama2_math", "eva_rho1") == 13.1   # Table 8's EVA row is rho=1
    assert pt.paper_number("eva/llama2_math", "eva") == 12.5        # adapter=eva is rho=2: Table 11
    assert pt.paper_number("eva/llama2_math", "dora") == 11.5
    assert {"pissa/llama2_math", "eva/llama2_math"} <= set(pt.SOURCES)
    assert not any("MATH" in k for k in pt.NOT_RUN)
