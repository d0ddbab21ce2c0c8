"""GSM8K answer extraction on handcrafted completions."""
import pytest

from lorabench.eval import answers
from lorabench.tasks import gsm8k


@pytest.mark.parametrize("text,expected", [
    ("#### 18", "18"), ("#### 1,234", "1234"), ("#### -5", "-5"), ("#### $3.50", "3.5"), ("#### 2.0", "2"),
    ("#### £195 per day", "195"), ("#### 45%", "45"), ("#### 0.25 hours", "0.25"), ("#### -0", "0"),
    ("#### .5", "0.5"), ("####12", "12"), ("####\n 7 apples", "7"), ("no marker 12", None), ("#### none", None),
])
def test_after_hash_marker(text, expected):
    assert answers.after_marker(text, "####") == expected


def test_last_number_and_reference():
    assert answers.last_number("3 apples, then 1,000.50 dollars.") == "1000.5"
    assert answers.last_number("nothing here") is None
    assert answers.reference("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == "18"
    assert answers.same("18", "18.00") and not answers.same(None, "18") and not answers.same("17", "18")


def test_protocol_scoring():
    s = gsm8k.score("2 + 2 = 4\n#### 4", "4", "lora_ga")
    assert s["accuracy"] and s["accuracy_flexible"]
    s = gsm8k.score("so the total is 4 apples", "4", "lora_ga")
    assert not s["accuracy"] and s["accuracy_flexible"]           # strict needs '####'
    assert gsm8k.score("The answer is: 1,200", "1200", "metamath")["accuracy"]


def test_prompt_response_formats():
    assert gsm8k.prompt(" How many? ", "lora_ga") == "Q: How many?\nA: "
    assert gsm8k.response("a = 2\n#### 2", "lora_ga") == "a = 2\n#### 2"
    # MetaMathQA's GSM form, as PiSSA trains on it: the '#### N' line kept, then 'The answer is: N', + "\n"
    assert gsm8k.response("a = 2\n#### 2", "metamath") == "a = 2\n#### 2\nThe answer is: 2\n"
    assert gsm8k.response("a = 2\n#### 2", "metamath", raw="raw text\nThe answer is: 2") == "raw text\nThe answer is: 2\n"


def _fake_metamathqa(monkeypatch):
    import datasets

    rows = [
        {"type": "GSM_Rephrased", "query": "q1", "response": "2 + 2 = 4\n#### 4\nThe answer is: 4"},
        {"type": "MATH_AnsAug", "query": "q2", "response": "x = 1/2.\nThe answer is: \\frac{1}{2}"},
        {"type": "GSM_SV", "query": "q3 " + "long " * 600, "response": "5\nThe answer is: 5"},
        {"type": "GSM_FOBAR", "query": "q4", "response": "3 * 3 = 9\nThe answer is: 9"},
        {"type": "GSM_AnsAug", "query": "q5", "response": "no final answer"},
        {"type": "GSM_AnsAug", "query": "q6", "response": "1 + 1 = 2\nThe answer is: 2"},
    ]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: rows)


@pytest.mark.parametrize("protocol, queries", [
    ("lora_ga", ["q1", "q4", "q6"]),        # GSM types, under max_length tokens, first N in dataset order
    ("metamath", ["q1", "q2", "q3"]),   # PiSSA/EVA: first N of every type, long ones kept (truncated later)
])
def test_metamathqa_selection_follows_each_protocol(protocol, queries, monkeypatch):
    from conftest import compose
    from lorabench import models

    _fake_metamathqa(monkeypatch)
    cfg = compose("task=gsm8k", f"task.protocol={protocol}", "task.train_size=2", "task.valid_size=1").task
    items = gsm8k._metamathqa(cfg, models.load_tokenizer(compose("model=tiny_llama").model))
    assert [x["question"].split()[0] for x in items] == queries
    assert items[0]["answer"] == "2 + 2 = 4\n#### 4"   # one final answer, not '#### 4' twice
    assert items[0]["raw"] == "2 + 2 = 4\n#### 4\nThe answer is: 4"   # metamath trains on the raw response
    assert gsm8k.response(items[0]["answer"], "metamath", items[0]["raw"]) == "2 + 2 = 4\n#### 4\nThe answer is: 4\n"
