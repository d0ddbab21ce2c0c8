"""Full fine-tuning: the reference row. No adapter; every parameter trains, unless adapter.target_modules names
the modules to train.

adapter.target_modules = null (configs/adapter/full_ft.yaml): every parameter trains (embeddings, norms, head).
adapter.target_modules = [names]: only the parameters of the modules those names match train, matched as peft
matches LoRA targets (a module whose dotted name is, or ends with, "." + the name); "all-linear" is every
nn.Linear but the output head, as in peft. An experiment whose paper trains every weight in its full-FT row
leaves adapter.target_modules null and puts its LoRA targets in model.target_modules. The GoRA Llama experiments
set [q_proj, k_proj, v_proj, o_proj] for every method, full FT included, as GoRA's official baseline trains the
attention projections only (hhnqqq/MyTransformers scripts/gora/fft_metamathqa.sh `--enable-list wq wk wv wo`,
applied by common/utils/params_manager.py: a parameter trains when its name contains a listed name; its
wq/wk/wv/wo are Hugging Face Llama's q/k/v/o_proj).
"""
from omegaconf import OmegaConf
from torch import nn

from lorabench.adapters import InitMethod, register
from lorabench.errors import ConfigError


def _matches(name: str, targets: list[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def trainable_modules(model: nn.Module, targets: list[str]) -> list[str]:
    """Names of the modules whose own parameters train for these targets."""
    if "all-linear" in targets:
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]
    return [n for n, m in model.named_modules()
            if _matches(n, targets) and next(m.parameters(recurse=False), None) is not None]


def full_ft(model, adapter_cfg, batches, ctx):
    if adapter_cfg.target_modules is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    targets = list(OmegaConf.to_container(adapter_cfg.target_modules, resolve=True)
                   if OmegaConf.is_config(adapter_cfg.target_modules) else adapter_cfg.target_modules)
    names = trainable_modules(model, targets)
    if not names:
        raise ConfigError(f"adapter.target_modules={targets} matches no module of the model: full fine-tuning "
                          "would train nothing. Name existing modules (e.g. q_proj), or null to train every parameter.")
    for p in model.parameters():
        p.requires_grad_(False)
    modules = dict(model.named_modules())
    for n in names:
        for p in modules[n].parameters(recurse=False):
            p.requires_grad_(True)
    ctx.extra["trainable"] = targets
    ctx.extra["trainable_modules"] = len(names)
    return model


register(InitMethod("full_ft", full_ft, uses_adapter=False))
