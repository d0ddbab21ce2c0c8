"""The leaderboard is a deterministic function of the records, with correct mean ± std."""
from lorabench import codeid, results
from lorabench.report import leaderboard


def fake(adapter, seed, acc, loss=1.0, experiment=None):
    config = {"model": {"name": "m"}, "task": {"name": "t", "family": "glue"}, "adapter": {"name": adapter, "init": "lora"},
              "seed": seed, "x": experiment}
    return {"status": "success", "config": config, "code": codeid.code_id(config), "experiment": experiment, "model": "m", "task": "t",
            "adapter": adapter, "init": adapter, "protocol": "lora_ga", "mini": True, "seed": seed,
            "metrics": {"primary": "accuracy", "values": {"accuracy": acc}, "n": 10},
            "costs": {"init_seconds": 1.0, "train_seconds": 2.0, "init_peak_mb": 10.0, "train_peak_mb": 20.0},
            "params": {"trainable": 100}, "curve": [{"step": 1, "loss": loss}]}


def test_deterministic_and_correct(tmp_path):
    for adapter, seed, acc in [("lora", 0, 0.10), ("lora", 1, 0.20), ("pissa", 0, 0.30)]:
        results.write(tmp_path, fake(adapter, seed, acc))
    results.write(tmp_path, {**fake("lora", 2, 0.9), "status": "failed"})   # failed runs are left out
    md1 = leaderboard.build(tmp_path, plots=False).read_bytes()
    csv1 = (tmp_path / "leaderboard.csv").read_bytes()
    md2 = leaderboard.build(tmp_path, plots=False).read_bytes()
    assert md1 == md2 and csv1 == (tmp_path / "leaderboard.csv").read_bytes()
    text = md1.decode()
    assert "| lora | lora | 2 | 15.00 ± 7.07 |" in text       # mean ± sample std over 2 seeds
    assert "| pissa | pissa | 1 | **30.00** |" in text          # best accuracy in bold


def test_paper_numbers_side_by_side(tmp_path):
    results.write(tmp_path, fake("lora_ga", 0, 0.5, experiment="lora_ga/llama2_gsm8k"))
    text = leaderboard.build(tmp_path, plots=False).read_text()
    assert "lora_ga/llama2_gsm8k" in text and "53.60" in text
    assert "| 53.60† | -3.60 (accuracy) |" in text          # no official score in the record: the primary


def test_paper_comparison_uses_the_official_scorer(tmp_path):
    rec = fake("lora_ga", 0, 0.5, experiment="lora_ga/llama2_gsm8k")
    rec["metrics"]["values"]["accuracy_official"] = 0.4
    results.write(tmp_path, rec)
    for adapter, official in (("gora", 0.9), ("lora", 0.9)):   # GoRA's T5 table: LoRA's row is LoRA-GA's first token
        r = fake(adapter, 0, 0.8, experiment="gora/t5_glue")
        r["task"], r["metrics"]["values"]["accuracy_official"] = "glue_mrpc", official
        results.write(tmp_path, r)
    text = leaderboard.build(tmp_path, plots=False).read_text()
    assert "| 53.60† | -13.60 (accuracy_official) |" in text
    assert "| 86.10† | +3.90 (accuracy_official) |" in text and "| 68.38† | +11.62 (accuracy) |" in text


def test_paper_numbers_per_glue_task():
    from lorabench.report.paper_tables import paper_number

    assert paper_number("lora_ga/t5_glue", "lora_ga", "glue_mrpc") == 85.29
    assert paper_number("pissa/deberta_glue_cola", "pissa", "glue_cola") == 73.12
    assert paper_number("lora_ga/t5_glue", "lora_ga", "glue_rte") is None   # not in that table
    assert paper_number("lora_ga/llama2_gsm8k", "lora_ga", "gsm8k") == 53.60


def test_base_model_score_gets_its_own_row(tmp_path):
    rec = fake("lora", 0, 0.5)
    rec["metrics_base"] = {"primary": "accuracy", "values": {"accuracy": 0.125}, "n": 10}
    results.write(tmp_path, rec)
    text = leaderboard.build(tmp_path, plots=False).read_text()
    assert "| (base model) | — | 1 | 12.50 | — | — | — | — | 0 | — |" in text
    assert "| lora | lora | 1 | **50.00** |" in text


def test_every_paper_number_names_its_source_and_second_hand_ones_are_marked():
    from lorabench.report import paper_tables

    experiments = {key[0] for key in paper_tables.PAPERS}
    assert experiments <= set(paper_tables.SOURCES)            # no number without a source
    cell = paper_tables.paper_cell
    assert cell("lora_ga/llama2_gsm8k", paper_tables.paper_number("lora_ga/llama2_gsm8k", "lora_ga")) == "53.60†"
    assert cell("eva/llama2_gsm8k", paper_tables.paper_number("eva/llama2_gsm8k", "eva_rho1")) == "61.90"   # own table
    assert cell("eva/llama2_gsm8k", None) == "—"


def test_readme_tables_are_written_between_the_markers_only(tmp_path):
    from lorabench.report import readme

    rec = fake("lora", 0, 0.5)
    rec["metrics_base"] = {"primary": "accuracy", "values": {"accuracy": 0.125}, "n": 10}
    results.write(tmp_path, rec)
    page = tmp_path / "README.md"
    page.write_text(f"# title\nprose 1.0\n{readme.BEGIN}\nold 99.9\n{readme.END}\nafter\n")
    leaderboard.build(tmp_path, plots=False, readme_path=page)
    text = page.read_text()
    assert text.startswith("# title\nprose 1.0\n") and text.endswith(f"{readme.END}\nafter\n")
    assert "old 99.9" not in text and "12.5 -> 50.0 % (accuracy)" in text    # from the record, not by hand
    again = page.read_text()
    leaderboard.build(tmp_path, plots=False, readme_path=page)
    assert page.read_text() == again
    page.write_text("no markers")
    import pytest
    with pytest.raises(ValueError, match="markers"):
        leaderboard.build(tmp_path, plots=False, readme_path=page)
