"""Full fine-tuning: the reference row. Every parameter trains; no adapter."""
from lorabench.adapters import InitMethod, register


def full_ft(model, adapter_cfg, batches, ctx):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


register(InitMethod("full_ft", full_ft, uses_adapter=False))
