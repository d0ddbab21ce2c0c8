"""GLUE: metrics against their closed forms, the mini split, first-token scoring, heads, config errors."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import compose
from lorabench import models
from lorabench.config import validate
from lorabench.errors import ConfigError, OfflineError
from lorabench.tasks import glue

GLUE_FAST = ["trainer=test", "logger=none", "task.valid_size=4", "task.eval_size=12", "task.train_size=24",
             "task.eval_batch_size=5"]


# ---- metrics on handcrafted predictions --------------------------------------------------------------

def test_classification_metrics_match_their_closed_forms():
    golds = [1, 1, 1, 1, 0, 0, 0, 1, 0, 1]
    preds = [1, 0, 1, 1, 0, 1, 0, 1, 0, 0]
    tp, tn, fp, fn = 4, 3, 1, 2
    v = glue.metric_values(preds, golds, ("accuracy", "f1", "mcc"))
    assert v["accuracy"] == pytest.approx(7 / 10)
    assert v["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert v["mcc"] == pytest.approx(mcc)


def test_regression_metrics_match_their_closed_forms():
    golds = [0.0, 1.5, 2.0, 3.2, 4.8, 5.0]
    preds = [0.4, 1.0, 2.9, 2.5, 4.0, 4.9]
    v = glue.metric_values(preds, golds, ("pearson", "spearman"))
    assert v["pearson"] == pytest.approx(np.corrcoef(golds, preds)[0, 1])
    ranks = lambda x: np.argsort(np.argsort(x))   # noqa: E731  (no ties here)
    assert v["spearman"] == pytest.approx(np.corrcoef(ranks(golds), ranks(preds))[0, 1])
    # a monotone but non-linear prediction: Spearman 1, Pearson below 1
    v = glue.metric_values([g ** 3 for g in golds], golds, ("pearson", "spearman"))
    assert v["spearman"] == pytest.approx(1.0) and v["pearson"] < 0.99


# ---- data --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("subset", glue.MINI_SUBSETS)
def test_mini_split_is_seeded_disjoint_halves(subset):
    cfg = compose("task=glue_mini", f"task.subset={subset}", "task.valid_size=0")
    a, b = glue.load(cfg.task), glue.load(cfg.task)
    assert a.train == b.train and a.test == b.test
    key = lambda x: (x["text"], x.get("text_pair"))   # noqa: E731
    assert not {key(x) for x in a.train} & {key(x) for x in a.test}
    assert abs(len(a.train) - len(a.test)) <= 1 and a.num_labels == 2
    assert {x["label"] for x in a.test} == {0, 1}
    other = glue.load(compose("task=glue_mini", f"task.subset={subset}", "task.valid_size=0", "task.data_seed=1").task)
    assert other.test != a.test
    assert "mini split" in a.source["train"] and cfg.task.name == f"glue_mini_{subset}"


def test_t5_format_uses_lora_ga_prompts_and_label_words():
    cfg = compose("task=glue_mini", "task.subset=mrpc", "task.protocol=t5_first_token", "model=tiny_t5")
    data = glue.load(cfg.task)
    x = data.train[0]
    assert x["prompt"].startswith("classify the semantic similarity of the text: ") and x["prompt"].endswith("\nresult: ")
    assert x["response"] in ("different", "equivalent") and data.num_labels is None


# ---- scoring -----------------------------------------------------------------------------------------

def _prompts():
    return ["classify the sentiment of the text: a fine film\nresult: ",
            "classify the sentiment of the text: dull , overlong and badly acted from start to finish\nresult: ",
            "classify the sentiment of the text: ok\nresult: "]


@pytest.mark.parametrize("model_name", ["tiny_t5", "tiny_llama"])
def test_first_token_scores_batched_equal_one_at_a_time(model_name):
    cfg = compose(f"model={model_name}")
    tok, model = models.load_tokenizer(cfg.model), models.load_model(cfg.model).eval()
    ids = glue.label_token_ids(tok, ("negative", "positive"))
    batched = glue.first_token_scores(model, tok, _prompts(), ids, batch_size=3)
    single = torch.cat([glue.first_token_scores(model, tok, [p], ids, batch_size=1) for p in _prompts()])
    assert batched.shape == (3, 2)
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)   # padding changes nothing
    # and the score is the logit of the label word's first token at the first output position
    with torch.no_grad():
        enc = tok(_prompts()[1], return_tensors="pt")
        if model.config.is_encoder_decoder:
            logits = model(**enc, decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id]])).logits[0, 0]
        else:
            logits = model(**enc).logits[0, -1]
    torch.testing.assert_close(single[1], logits[ids], atol=1e-4, rtol=1e-4)


def test_label_words_sharing_a_first_token_are_refused():
    tok = models.load_tokenizer(compose("model=tiny_llama").model)
    with pytest.raises(ConfigError, match="share a first token"):
        glue.label_token_ids(tok, ("not_entailment", "not_equivalent"))


def test_first_token_accuracy_counts_the_argmax_label_and_lora_gas_strict_comparison(monkeypatch):
    cfg = compose("task=glue_mini", "task.protocol=t5_first_token", "model=tiny_llama")
    prompts = _prompts() + [_prompts()[2]]
    test = [{"prompt": p, "response": r} for p, r in zip(prompts, ["positive", "negative", "negative", "negative"])]
    fake = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.0, 0.5], [1.0, 1.0]])   # positive, negative, positive, tie
    monkeypatch.setattr(glue, "first_token_scores", lambda *a, **k: fake)
    tok = models.load_tokenizer(cfg.model)
    model = torch.nn.Module()
    model.get_output_embeddings = lambda: torch.nn.Linear(4, len(tok))
    out = glue.evaluate(model, tok, test, cfg.task)
    assert out["primary"] == "accuracy" and [s["pred"] for s in out["samples"]] == [1, 0, 1, 0]   # a tie: the first
    # LoRA-GA's compute_metrics: gold logit > the other label's, strictly (the tie counts wrong)
    assert out["values"] == {"accuracy": pytest.approx(3 / 4), "accuracy_official": pytest.approx(2 / 4)}


def test_cola_classification_reports_mcc_first(monkeypatch):
    cfg = compose("task=glue", "task.subset=cola", "task.protocol=classification", "model=tiny_bert")
    test = [{"text": "x", "label": g} for g in (1, 0, 1, 0)]
    monkeypatch.setattr(glue, "head_predictions", lambda *a, **k: [1, 0, 0, 0])
    out = glue.evaluate(torch.nn.Linear(1, 1), None, test, cfg.task)
    assert out["primary"] == "mcc"
    assert out["values"]["mcc"] == pytest.approx((1 * 2 - 0 * 1) / math.sqrt(1 * 2 * 3 * 2))
    assert out["values"]["accuracy"] == pytest.approx(3 / 4)


def test_regression_head_is_trained_with_squared_error():
    from lorabench.data import collate, tokenize
    from lorabench.train import loss_sum

    cfg = compose("model=tiny_bert")
    tok = models.load_tokenizer(cfg.model)
    model = models.load_model(cfg.model, num_labels=1).eval()
    samples = tokenize([{"text": "a", "text_pair": "b", "label": 3.5}, {"text": "c d e", "text_pair": "f", "label": 0.2}],
                       tok, 32, "seq_cls")
    batch = collate(samples, tok.pad_token_id)
    assert batch["labels"].dtype == torch.float32 and "token_type_ids" in batch
    s, n = loss_sum(model, batch)
    pred = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.squeeze(-1)
    assert n == 2 and s.item() == pytest.approx(((pred - batch["labels"]) ** 2).sum().item(), rel=1e-5)


def test_seq2seq_loss_sums_target_tokens():
    from lorabench.data import collate, tokenize
    from lorabench.train import loss_sum

    cfg = compose("model=tiny_t5")
    tok = models.load_tokenizer(cfg.model)
    model = models.load_model(cfg.model).eval()
    samples = tokenize([{"prompt": "classify: a\nresult: ", "response": "positive"},
                        {"prompt": "classify: b c d\nresult: ", "response": "not_entailment"}], tok, 64, "seq2seq")
    batch = collate(samples, tok.pad_token_id)
    s, n = loss_sum(model, batch, seq2seq=True)
    hf = model(**batch).loss   # transformers' token mean over the same targets
    assert n == sum(len(x["labels"]) for x in samples)
    assert (s / n).item() == pytest.approx(hf.item(), rel=1e-5)


# ---- config errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["task=glue_mini", "model=smollm2_135m"], "needs a seq_cls model"),
    (["task=glue", "model=tiny_bert"], "needs a seq2seq or causal_lm model"),
    (["task=glue", "task.subset=stsb"], "regression"),
    (["task=glue_mini", "task.subset=cola"], "sst2, mrpc, rte"),
    (["task=glue", "task.subset=wnli"], "mnli, sst2, cola"),
    (["task=glue_mini", "task.protocol=accuracy"], "t5_first_token, classification"),
    (["task=glue_mini", "+task.options.foo=1"], "takes no task.options"),
])
def test_bad_glue_configs_fail_before_a_model_loads(overrides, message, monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ConfigError, match=message):
        validate(compose(*overrides), check_shapes=False)


def test_full_glue_offline_names_the_mini_variant():
    cfg = compose("task=glue", "task.subset=mnli")
    validate(cfg, check_shapes=False)
    with pytest.raises(OfflineError, match="task=glue_mini"):
        glue.load(cfg.task)


# ---- end to end --------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, primary", [
    (["model=tiny_bert", "task.subset=mrpc"], "accuracy"),
    (["model=tiny_t5", "task.protocol=t5_first_token", "task.subset=rte"], "accuracy"),
    (["model=tiny_t5", "task.protocol=t5_first_token", "adapter=lora_ga", "adapter.init_batches=2",
      "adapter.init_batch_size=2"], "accuracy"),
])
def test_glue_mini_runs_end_to_end(overrides, primary, tmp_path):
    from lorabench.run import run

    cfg = compose("task=glue_mini", *GLUE_FAST, *overrides, root=tmp_path)
    record = run(cfg)
    assert record["metrics"]["primary"] == primary and record["metrics"]["n"] == 12
    assert 0.0 <= record["metrics"]["values"][primary] <= 1.0
    assert record["mini"] is True and record["task"].startswith("glue_mini_") and "mini split" in record["data"]["test"]
    assert record["steps"] == cfg.trainer.max_steps and all(math.isfinite(p["loss"]) for p in record["curve"])
    saved = json.loads(next((tmp_path / "results").rglob("*.json")).read_text())
    assert saved["protocol"] == cfg.task.protocol
