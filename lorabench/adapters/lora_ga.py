"""LoRA-GA (paper / official code) and peft's variant `lora_ga_peft`."""
from lorabench.adapters import InitMethod, register

register(InitMethod("lora_ga", None, defaults={"direction": "ArB2r", "scale": "stable", "stable_gamma": 16},
                   data_driven=True, mutates_base=True, rank_factor=2))
register(InitMethod("lora_ga_peft", None, defaults={"direction": "ArB2r", "scale": "stable", "stable_gamma": 16},
                   data_driven=True, mutates_base=True, rank_factor=2))
