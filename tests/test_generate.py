"""Batched generation: left padding changes no greedy output, runs are deterministic, stop strings cut."""
import pytest

from conftest import compose
from lorabench import models
from lorabench.eval.generate import cut_at_stops, generate

PROMPTS = ["Q: What is 2 + 3?\nA: ", "Q: A farmer has 12 cows and buys 7 more. How many cows does he have now?\nA: ",
           "The capital of France is", "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n"]


@pytest.fixture(scope="module")
def smol():
    cfg = compose("model=smollm2_135m")
    return models.load_model(cfg.model).eval(), models.load_tokenizer(cfg.model)


def test_batched_greedy_equals_one_prompt_at_a_time(smol):
    model, tok = smol
    batched = generate(model, tok, PROMPTS, 16, batch_size=4, show_progress=False)
    single = [generate(model, tok, [p], 16, batch_size=1, show_progress=False)[0] for p in PROMPTS]
    assert batched == single
    assert generate(model, tok, PROMPTS, 16, batch_size=3, show_progress=False) == batched   # deterministic
    assert all(len(c) > 0 for c in batched)


def test_stop_strings_end_each_completion(smol):
    model, tok = smol
    free = generate(model, tok, PROMPTS, 16, batch_size=4, show_progress=False)
    stopped = generate(model, tok, PROMPTS, 16, batch_size=4, stop_strings=["\n", " "], show_progress=False)
    for f, s in zip(free, stopped):
        assert "\n" not in s and " " not in s
        assert s == cut_at_stops(f, ["\n", " "])   # the same text, cut where the first stop string begins


def test_cut_at_stops():
    assert cut_at_stops("a\nQ: b", ["\nQ:", "\n\n\n"]) == "a"
    assert cut_at_stops("abc", ["x"]) == "abc" and cut_at_stops("abc", []) == "abc"
    assert cut_at_stops("x\n\n\ny\nQ:", ["\nQ:", "\n\n\n"]) == "x"


def test_own_greedy_loop_equals_generate(smol, monkeypatch):
    """greedy.decode (rows retired as they end, prefill in length groups joined into one cache) gives
    model.generate's completions: free, cut by stop strings, and ended by EOS."""
    from lorabench.eval import greedy

    model, tok = smol
    prompts = PROMPTS + ["Hello", "Q: What is 7 times 6?\nA: The answer is"]
    free = generate(model, tok, prompts, 24, batch_size=6, show_progress=False)
    eos = tok(free[0], add_special_tokens=False)["input_ids"][3]   # a token the first completion writes early
    monkeypatch.setattr(greedy, "PREFILL_ROWS", 2)          # several prefill groups in one batch

    def both():
        return [generate(model, tok, prompts, 24, batch_size=6, stop_strings=s, show_progress=False)
                for s in ([], ["\n", "."])]
    ours = both()
    with monkeypatch.context() as m:
        m.setattr(model.generation_config, "eos_token_id", eos)   # both loops end a row at this token
        ours_eos = both()
        m.setattr(greedy, "supported", lambda model: False)   # model.generate's loop
        theirs_eos = both()
    monkeypatch.setattr(greedy, "supported", lambda model: False)
    assert ours == both() and ours_eos == theirs_eos
    assert ours[0] == free and ours[1] != ours[0] and all("\n" not in c and "." not in c for c in ours[1])
    assert len(ours_eos[0][0]) < len(free[0])   # ended at the EOS token
