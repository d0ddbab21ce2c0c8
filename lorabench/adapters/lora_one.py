"""LoRA-One."""
from lorabench.adapters import InitMethod, register

register(InitMethod("lora_one", None, defaults={"stable_gamma": 128}, data_driven=True))
