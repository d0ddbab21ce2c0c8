"""The packaged SmolLM2 is named for what it is (Instruct, de-quantized from Q4_1), and a saved adapter names
the hub model as its base, not this machine's cache folder."""
import json

from conftest import compose


def test_packaged_smollm2_is_named_instruct_q4_1():
    cfg = compose("model=smollm2_135m")
    assert cfg.model.name == "smollm2-135m-instruct-q4_1"
    assert cfg.model.source == "packaged:smollm2-135m-instruct"


def test_saved_adapter_names_the_hub_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    from lorabench import models

    for override, hub in [("model=smollm2_135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
                          ("model=minilm_l6", "sentence-transformers/all-MiniLM-L6-v2")]:
        cfg = compose(override)
        model = models.load_model(cfg.model, None, num_labels=2)
        peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=list(cfg.model.target_modules)))
        peft_model.save_pretrained(tmp_path / cfg.model.name)
        saved = json.loads((tmp_path / cfg.model.name / "adapter_config.json").read_text())
        assert saved["base_model_name_or_path"] == hub


def test_random_models_keep_no_hub_name():
    from lorabench import models

    model = models.load_model(compose("model=tiny_llama").model, None)
    assert not model.__dict__.get("name_or_path")
