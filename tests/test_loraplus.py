"""LoRA+ (trainer.loraplus_lr_ratio, through peft's create_loraplus_optimizer): B at lr x ratio, A at lr;
ratio 1 trains exactly as the plain optimizer does; a config without LoRA matrices fails before loading."""
import pytest
import torch

from conftest import compose
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.run import run
from lorabench.train import make_optimizer


def lora_model():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2))
    return get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True))


def test_b_gets_ratio_times_the_rate():
    model = lora_model()
    cfg = compose("trainer.lr=1e-3", "trainer.loraplus_lr_ratio=16").trainer
    opt = make_optimizer(model, [p for p in model.parameters() if p.requires_grad], cfg)
    rate = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        if "lora_A" in name:
            assert rate[id(p)] == pytest.approx(1e-3), name
        elif "lora_B" in name or "magnitude" in name:   # peft (and the LoRA+ reference code): vectors with B
            assert rate[id(p)] == pytest.approx(16e-3), name
    assert len(rate) == sum(p.requires_grad for p in model.parameters())


def test_ratio_one_trains_bit_for_bit_as_the_plain_optimizer(fast_cfg):
    plain = run(fast_cfg())
    ratio_one = run(fast_cfg("trainer.loraplus_lr_ratio=1"))
    assert [p["loss"] for p in plain["curve"]] == [p["loss"] for p in ratio_one["curve"]]
    assert plain["rank_checksums"] == ratio_one["rank_checksums"]
    sixteen = run(fast_cfg("trainer.loraplus_lr_ratio=16"))
    assert [p["loss"] for p in sixteen["curve"]][1:] != [p["loss"] for p in plain["curve"]][1:]


def test_loraplus_without_lora_matrices_fails_at_config_time():
    with pytest.raises(ConfigError, match="no LoRA matrices"):
        validate(compose("adapter=full_ft", "trainer.loraplus_lr_ratio=16", "logger=none"), check_shapes=False)
    with pytest.raises(ConfigError, match="must be positive"):
        validate(compose("trainer.loraplus_lr_ratio=0", "logger=none"), check_shapes=False)
