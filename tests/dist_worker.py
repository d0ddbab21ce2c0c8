"""Run every given adapter's init on this process's share of the init batches and save the resulting adapter and
base weights: launched with 2 processes by test_distributed.py, and called in-process for the 1-process reference.
`--smol` first: SmolLM2's first two layers (real weights) on 4 real gsm8k_mini batches instead of tiny_llama on
random ones; real spectra are where rounding used to flip singular vectors."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import compose  # noqa: E402
from test_export import random_batches  # noqa: E402

from lorabench import adapters, models  # noqa: E402


GRADIENTS = "gradients"   # not an adapter: the shared gradient estimator's G itself


def init_state(adapter: str, accelerator=None) -> dict[str, torch.Tensor]:
    cfg = compose("model=tiny_llama", f"adapter={'lora' if adapter == GRADIENTS else adapter}", "adapter.init_batches=8",
                  "adapter.r=4")   # EVA needs rho*r tokens per batch: 8 of the 24 here
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    base._lorabench_targets = list(cfg.model.target_modules)
    batches = random_batches(n=8)
    if accelerator is not None:     # batch b goes to process b % world, as run.init_batches does
        batches = batches[accelerator.process_index::accelerator.num_processes]
    torch.manual_seed(accelerator.process_index if accelerator else 0)   # ranks' global RNGs differ on purpose
    if adapter == GRADIENTS:
        from lorabench.adapters.common import attach, lora_config
        from lorabench.adapters.gradients import layer_gradients

        return layer_gradients(attach(base, lora_config(base, cfg.adapter, "CAUSAL_LM")), batches, accelerator)
    model, _ = adapters.init_adapter(base, cfg.adapter, batches, accelerator=accelerator)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k or "base_layer.weight" in k}


def smol_state(adapter: str, accelerator=None, smol=None) -> dict[str, torch.Tensor]:
    from conftest import Smol, two_layers

    smol = smol or Smol()
    cfg = smol.compose(adapter, "adapter.init_batches=4", "adapter.init_batch_size=2")
    base = two_layers(smol.load(cfg))
    batches = smol.batches
    if accelerator is not None:
        batches = batches[accelerator.process_index::accelerator.num_processes]
    torch.manual_seed(accelerator.process_index if accelerator else 0)
    model, _ = adapters.init_adapter(base, cfg.adapter, batches, accelerator=accelerator)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k or "base_layer.weight" in k}


if __name__ == "__main__":
    from accelerate import Accelerator

    smol = sys.argv[1] == "--smol"
    out, names = Path(sys.argv[1 + smol]), sys.argv[2 + smol:]
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, f"expected 2 processes, got {acc.num_processes}"
    if smol:
        from conftest import Smol

        data = Smol()
    for name in names:
        state = smol_state(name, acc, data) if smol else init_state(name, acc)
        torch.save(state, out / f"{name}.rank{acc.process_index}.pt")
    acc.wait_for_everyone()
