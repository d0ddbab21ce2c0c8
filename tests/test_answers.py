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
    assert gsm8k.response("a = 2\n#### 2", "metamath").endswith("The answer is: 2")
