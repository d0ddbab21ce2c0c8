"""eval_merged=true: scoring runs on W + s*B*A merged (the base model's cost per token) with the numbers of
the unmerged model up to rounding, restores the adapter afterwards, and is a different run identity."""
import pytest
import torch
from peft import LoraConfig, get_peft_model

from conftest import compose
from lorabench import models, results
from lorabench.config import to_container, validate
from lorabench.errors import ConfigError
from lorabench.run import run
from lorabench.scoring import merged


@pytest.mark.parametrize("dora", [False, True])
def test_merged_forward_equals_unmerged_and_is_undone(dora):
    cfg = compose("model=tiny_llama")
    torch.manual_seed(0)
    model = get_peft_model(models.load_model(cfg.model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                                    use_dora=dora, init_lora_weights=False))
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with merged(model, True):
            assert all(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
            fused = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert not torch.equal(fused, plain)                          # it really ran merged ...
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)   # ... with the same numbers up to rounding
    torch.testing.assert_close(after, plain, rtol=1e-4, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, before[n], rtol=1e-5, atol=1e-6)


def test_a_run_scored_merged_matches_the_unmerged_run(fast_cfg):
    plain = run(fast_cfg("adapter=dora"))
    fused = run(fast_cfg("adapter=dora", "eval_merged=true"))
    assert fused["config_hash"] != plain["config_hash"]           # another identity: its numbers may round apart
    assert [p["loss"] for p in fused["curve"]] == [p["loss"] for p in plain["curve"]]   # training untouched
    for split in ("valid", "test"):
        assert fused["loss"][split] == pytest.approx(plain["loss"][split], rel=1e-5)
    assert fused["metrics"]["values"] == plain["metrics"]["values"]


def test_merging_into_a_4bit_base_fails_at_config_time():
    cfg = compose("model=tiny_llama", "quant=nf4", "eval_merged=true")
    with pytest.raises(ConfigError, match="eval_merged=false"):
        validate(cfg, check_shapes=False)


def test_existing_records_keep_their_identity():
    cfg = to_container(compose())
    del cfg["eval_merged"]                                        # a record written before the key existed
    assert results.config_hash(cfg) == results.config_hash(to_container(compose()))


@pytest.mark.parametrize("adapter", ["lora_sb", "nlora", "loldu", "mica", "kasa"])
def test_newer_adapters_merge_and_unmerge(adapter):
    """Three-factor adapters (merged through MiddleA.weight = M A) and peft's MiCA / KaSA variants score merged
    with the unmerged numbers and come back unchanged."""
    from lorabench import adapters

    cfg = compose("model=tiny_llama", f"adapter={adapter}", "adapter.r=4")
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    base._lorabench_targets = list(cfg.model.target_modules)
    ids = torch.randint(0, base.config.vocab_size, (2, 12))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]
    model, _ = adapters.init_adapter(base, cfg.adapter, batches)
    with torch.no_grad():   # stands in for training: move every trainable parameter
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    model.eval()
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with merged(model, True):
            assert all(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
            fused = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert not torch.equal(fused, plain)                          # it really ran merged
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after, plain, rtol=1e-5, atol=1e-6)
