"""lm-evaluation-harness as a backend (lorabench/eval/lm_eval.py, task.protocol=lm_eval): lm-eval's own stock
tasks, run in memory over our model on our commonsense_mini items, agree with our `loglik` protocol item by
item, acc and acc_norm, on every dataset. Offline: the stock task files are included by path, the data is local."""
import pytest

from conftest import compose, two_layers
from lorabench.errors import ConfigError

import lm_eval  # noqa: F401  `make install` installs the lm-eval extra: a missing one fails here, never skips


@pytest.fixture(scope="module")
def both():
    """Our loglik and lm-eval on the same 3 items per dataset (24 items, 70 requests), SmolLM2's tokenizer and
    its first two layers (real weights: the prompts, tokenization and normalization are what is compared;
    depth changes no request)."""
    from lorabench import models, tasks

    cfg = compose("model=smollm2_135m", "task=commonsense_mini", "task.protocol=lm_eval", "task.eval_size=3")
    tokenizer = models.load_tokenizer(cfg.model)
    fam = tasks.family("commonsense")
    data = fam.load(cfg.task, tokenizer)
    model = two_layers(models.load_model(cfg.model, None))
    return data.test, fam.evaluate(model, tokenizer, data.test, cfg.task)


def test_lm_eval_equals_our_loglik_item_by_item(both):
    items, res = both
    samples = res["samples"]
    assert len(samples) == 24 and {s["dataset"] for s in samples} == {
        "boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"}
    for x, s in zip(items, samples):
        assert len(s["loglik"]) == len(s["lm_eval_loglik"]) == len(x["contexts"])
        # the same requests: every choice's log-likelihood within float noise (one pass vs two)
        assert s["loglik"] == pytest.approx(s["lm_eval_loglik"], abs=2e-4), s["dataset"]
        assert s["pred"] == s["lm_eval_pred"], s["dataset"]
        assert s["correct"] == s["lm_eval_correct"], s["dataset"]
        assert s["correct_norm"] == s["lm_eval_correct_norm"], s["dataset"]
    v = res["values"]
    assert v["agree"] == 1.0 and v["agree_norm"] == 1.0
    assert v["average"] == v["ours_average"] and v["average_acc_norm"] == v["ours_average_acc_norm"]


def test_lm_eval_acc_norm_uses_its_choice_lengths(both):
    """acc_norm from lm-eval's log-likelihoods and OUR lengths gives lm-eval's acc_norm on every item:
    winogrande's lengths are each context's (sentence start + option), as lm-eval's choices are."""
    from lorabench.eval.loglik import choose

    items, res = both
    for x, s in zip(items, res["samples"]):
        _, norm = choose(s["lm_eval_loglik"], x["lengths"])
        assert (norm == x["gold"]) == s["lm_eval_correct_norm"], x["dataset"]
    wino = [x for x in items if x["dataset"] == "winogrande"]
    assert all(x["lengths"] == [len(c) for c in x["contexts"]] for x in wino)


def test_lm_eval_options_are_checked():
    from lorabench.config import validate

    with pytest.raises(ConfigError, match="task.protocol=lm_eval"):
        validate(compose("model=smollm2_135m", "task=commonsense_mini", "+task.options.lm_eval_tasks=[hellaswag]"))
    with pytest.raises(ConfigError, match="non-empty list"):
        validate(compose("model=smollm2_135m", "task=commonsense_mini", "task.protocol=lm_eval",
                         "+task.options.lm_eval_tasks=hellaswag"))
    validate(compose("model=smollm2_135m", "task=commonsense_mini", "task.protocol=lm_eval",
                     "+task.options.lm_eval_tasks=[hellaswag,arc_easy]"))


def test_local_task_file_includes_the_stock_task(tmp_path):
    import json

    from lorabench.eval import lm_eval

    name = lm_eval.write_local_task(tmp_path, "t", "winogrande/default.yaml", [{"sentence": "a _ b"}])
    cfg = json.loads((tmp_path / "t.yaml").read_text())
    assert name == "t" and cfg["include"].endswith("lm_eval/tasks/winogrande/default.yaml")
    assert cfg["dataset_kwargs"] == {"data_files": {"test": str(tmp_path / "t.jsonl")}}
    assert [m["metric"] for m in cfg["metric_list"]] == ["acc", "acc_norm"]
    with pytest.raises(FileNotFoundError, match="lm-eval"):
        lm_eval.write_local_task(tmp_path, "u", "no/such.yaml", [])


@pytest.mark.slow
def test_lm_eval_equals_our_loglik_on_all_of_commonsense_mini():
    """The whole mini test split (25 questions x 8 datasets) with the full packaged SmolLM2: every item's acc
    and acc_norm as lm-eval scores it."""
    from lorabench import models, tasks

    cfg = compose("model=smollm2_135m", "task=commonsense_mini", "task.protocol=lm_eval")
    tokenizer = models.load_tokenizer(cfg.model)
    fam = tasks.family("commonsense")
    data = fam.load(cfg.task, tokenizer)
    res = fam.evaluate(models.load_model(cfg.model, None), tokenizer, data.test, cfg.task)
    assert res["n"] == 200
    for s in res["samples"]:
        assert s["loglik"] == pytest.approx(s["lm_eval_loglik"], abs=2e-4), s["dataset"]
        assert (s["pred"], s["correct"], s["correct_norm"]) == (
            s["lm_eval_pred"], s["lm_eval_correct"], s["lm_eval_correct_norm"]), s["dataset"]
    assert res["values"]["agree"] == res["values"]["agree_norm"] == 1.0


@pytest.mark.slow
def test_a_run_records_lm_evals_metrics_beside_ours(fast_cfg):
    """python run.py task=commonsense_mini task.protocol=lm_eval: the record holds lm-eval's per-dataset acc and
    acc_norm, ours beside them and their agreement, for the trained and the base model (199 s on the busy
    2-core machine: three lm-eval passes over the packaged sets)."""
    import json
    from pathlib import Path

    from lorabench.run import run

    rec = run(fast_cfg("task=commonsense_mini", "task.protocol=lm_eval", "task.eval_size=1", "eval_base=true",
                       "task.train_size=8", "task.valid_size=2"))
    for m in (rec["metrics"], rec["metrics_base"]):
        assert m["protocol"] == "lm_eval" and m["n"] == 8
        assert {"boolq", "winogrande_acc_norm", "average", "ours_average", "agree", "agree_norm"} <= set(m["values"])
    samples = [json.loads(line) for line in (Path(rec["adapter_path"]).parent / "samples.jsonl").open()]
    assert len(samples) == 8 and all(len(s["lm_eval_loglik"]) == len(s["loglik"]) for s in samples)
