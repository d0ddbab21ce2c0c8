"""GLUE t5_generate: GoRA's official T5 scorer (greedy generation, exact label word; lorabench/eval/official.py
gora_t5_label, from hhnqqq/MyTransformers scripts/gora/t5_test.py @7ca92974) beside the first-token accuracy."""
import json

import pytest
import torch

from conftest import compose
from lorabench import models
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.eval import official
from lorabench.tasks import glue

MRPC = ("different", "equivalent")


# ---- the string match, by hand from t5_test.py: `next(k for k, v in label_map.items() if v == text)`, else -1 ----

@pytest.mark.parametrize("generation, expected", [
    ("equivalent", 1),
    ("different", 0),
    ("equivalent.", -1),             # trailing punctuation: no label word equals it
    ("equivalent ", -1),             # nor trailing whitespace: the label-map lookup does not strip
    (" equivalent", -1),
    ("Equivalent", -1),              # nor lowercase (strip().lower() is only for tasks without a label map)
    ("EQUIVALENT", -1),
    ("", -1),                        # an empty generation (eos first)
    ("equivalent equivalent", -1),   # a generation that goes on after the label word
    ("equivalent</s>", -1),          # special tokens are dropped by the decode, not here
    ("not_equivalent", -1),          # GoRA's own MRPC word is not one of LoRA-GA's
])
def test_gora_label_is_exact_string_equality(generation, expected):
    assert official.gora_t5_label(generation, MRPC) == expected


def test_a_wrong_label_word_and_a_non_label_are_both_wrong():
    golds = [1, 1, 0, 0]
    gens = ["equivalent", "different", "different", "different."]   # right, wrong word, right, not a word
    preds = [official.gora_t5_label(g, MRPC) for g in gens]
    assert preds == [1, 0, 0, -1]
    assert sum(p == g for p, g in zip(preds, golds)) / len(golds) == pytest.approx(0.5)
    assert official.gora_t5_label("not_entailment", ("entailment", "not_entailment")) == 1   # no prefix match
    assert official.gora_t5_label("entailment", ("entailment", "not_entailment")) == 0


# ---- on a tiny T5 ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_t5():
    cfg = compose("model=tiny_t5")
    torch.manual_seed(0)
    return models.load_tokenizer(cfg.model), models.load_model(cfg.model).eval()


@pytest.fixture
def short_generation(monkeypatch):
    """GoRA's 31 new tokens cost seconds per batch on a loaded CPU; 3 show the same path (the steered tests stop
    after 2 on their own, at GoRA's length)."""
    real = glue.generate_labels
    monkeypatch.setattr(glue, "generate_labels", lambda *a, **k: real(*a, **{**k, "max_length": 4}))


def _steer(model, tok, labels, bias=100.0):
    """Hooks that push the label words' first tokens up by `bias` at the first decoder step (all by the same amount,
    so the first-token argmax among the labels is unchanged) and eos at every later one. Greedy generation then
    writes the first-token argmax's first token and stops."""
    start, eos = model.config.decoder_start_token_id, tok.eos_token_id
    first = [tok(w, add_special_tokens=False)["input_ids"][0] for w in labels]
    last = {}

    def on_decoder(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        last["token"] = ids[:, -1]

    def on_head(module, args, out):
        at_start = (last["token"] == start).view(-1, 1, 1)
        add = torch.zeros_like(out)
        add[..., first] = bias
        later = torch.zeros_like(out)
        later[..., eos] = bias
        return out + torch.where(at_start, add, later)

    return [model.decoder.register_forward_pre_hook(on_decoder, with_kwargs=True),
            model.get_output_embeddings().register_forward_hook(on_head)]


PROMPTS = ["classify the sentiment of the text: a fine film\nresult: ",
           "classify the sentiment of the text: dull , overlong and badly acted from start to finish\nresult: ",
           "classify the sentiment of the text: ok\nresult: ",
           "classify the sentiment of the text: the best thing this year , bar none\nresult: "]


def _evaluate(model, tok, subset, golds):
    cfg = compose("task=glue", f"task.subset={subset}", "task.protocol=t5_generate", "model=tiny_t5",
                  "task.eval_batch_size=3")
    labels = glue.SUBSETS[subset].labels
    test = [{"prompt": p, "response": labels[g]} for p, g in zip(PROMPTS, golds)]
    return glue.evaluate(model, tok, test, cfg.task)


def test_greedy_generation_agrees_with_first_token_argmax_for_single_token_labels(tiny_t5):
    """SST-2's words are one token each here: when the unrestricted greedy first token is the restricted argmax
    (steered so) and the next is eos, the generation is that label word and both scores agree sample by sample."""
    tok, model = tiny_t5
    assert all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in ("negative", "positive"))
    ids = glue.label_token_ids(tok, ("negative", "positive"))
    plain = glue.first_token_scores(model, tok, PROMPTS, ids, batch_size=4).argmax(-1).tolist()
    hooks = _steer(model, tok, ("negative", "positive"))
    try:
        out = _evaluate(model, tok, "sst2", [1, 0, 0, 1])
    finally:
        for h in hooks:
            h.remove()
    s = out["samples"]
    assert [x["pred"] for x in s] == plain                         # the uniform push leaves the argmax alone
    assert [x["generation"] for x in s] == [("negative", "positive")[p] for p in plain]
    assert [x["pred_official"] for x in s] == plain
    assert out["values"]["accuracy_official"] == pytest.approx(out["values"]["accuracy"])
    assert out["primary"] == "accuracy" and out["protocol"] == "t5_generate"


def test_they_disagree_when_a_label_word_takes_more_tokens(tiny_t5):
    """CoLA's "unacceptable" is two tokens here ("un" + "acceptable"): the first-token score picks it from its
    first token, but a generation that stops after that token reads "un", which the exact match counts wrong."""
    tok, model = tiny_t5
    labels = glue.SUBSETS["cola"].labels
    assert len(tok(labels[0], add_special_tokens=False)["input_ids"]) > 1
    hooks = _steer(model, tok, labels)
    try:
        out = _evaluate(model, tok, "cola", [0, 1, 0, 1])
    finally:
        for h in hooks:
            h.remove()
    for x in out["samples"]:
        assert x["pred_official"] == (1 if x["pred"] == 1 else -1)
        assert x["generation"] == ("acceptable" if x["pred"] == 1 else tok.decode(tok(labels[0],
                                   add_special_tokens=False)["input_ids"][:1]))
    n_right = sum(x["pred_official"] == x["gold"] for x in out["samples"])
    assert out["values"]["accuracy_official"] == pytest.approx(n_right / 4)
    assert set(out["values"]) == {"accuracy", "accuracy_official", "mcc"}


def test_unsteered_random_t5_is_scored_on_what_it_writes(tiny_t5, short_generation):
    """Without steering, the random model's greedy output is whatever token wins over the whole vocabulary; the
    first-token score still picks a label (it is restricted to them), the official one counts the text."""
    tok, model = tiny_t5
    out = _evaluate(model, tok, "sst2", [1, 0, 0, 1])
    for x in out["samples"]:
        assert x["pred"] in (0, 1)
        assert x["pred_official"] == official.gora_t5_label(x["generation"], ("negative", "positive"))
    assert out["values"]["accuracy_official"] == pytest.approx(
        sum(x["pred_official"] == x["gold"] for x in out["samples"]) / 4)


# ---- config and record -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["task=glue", "task.protocol=t5_generate", "model=tiny_llama"], "needs a seq2seq model"),
    (["task=glue", "task.protocol=t5_generate", "model=tiny_t5", "task.subset=stsb"], "regression"),
])
def test_bad_t5_generate_configs(overrides, message, monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ConfigError, match=message):
        validate(compose(*overrides), check_shapes=False)


def test_gora_experiment_uses_the_official_scorer():
    cfg = compose("experiment=gora/t5_glue")
    assert cfg.task.protocol == "t5_generate"
    assert compose("experiment=lora_ga/t5_glue").task.protocol == "t5_first_token"
    assert compose("task=glue").task.protocol == "t5_first_token"              # defaults unchanged
    assert compose("task=glue_mini").task.protocol == "classification"


def test_record_carries_both_scores(tmp_path, short_generation):
    from lorabench.run import run

    # real generation through the adapter-wrapped model (at most 3 new tokens here), on test and valid
    cfg = compose("task=glue_mini", "trainer=test", "logger=none", "eval_base=false", "task.valid_size=2",
                  "task.eval_size=3", "task.train_size=8", "task.eval_batch_size=3", "model=tiny_t5",
                  "task.protocol=t5_generate", "task.subset=mrpc", root=tmp_path)
    record = run(cfg)
    values = record["metrics"]["values"]
    assert record["metrics"]["primary"] == "accuracy" and record["metrics"]["n"] == 3
    assert {"accuracy", "accuracy_official", "f1"} <= set(values)
    assert all(0.0 <= values[k] <= 1.0 for k in ("accuracy", "accuracy_official"))
    saved = json.loads(next((tmp_path / "results").rglob("*.json")).read_text())
    assert saved["protocol"] == "t5_generate" and "accuracy_official" in saved["metrics"]["values"]
