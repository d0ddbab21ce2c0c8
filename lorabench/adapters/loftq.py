"""LoftQ (Li et al. 2023, arXiv 2310.08659): alternate quantizing W and an SVD of the quantization error.

    res = W;  repeat iters times:  Q = quant(res);  R = W - deq(Q);  L, Rt = top-r SVD of R (U sqrt(S), sqrt(S) Vh)
                                   res = W - L Rt   (not after the last)
    lora_B = L, lora_A = Rt, base <- deq(Q)

peft implements it (LoraConfig(init_lora_weights="loftq", loftq_config=LoftQConfig(bits, iter)); checked
against huggingface/peft 0.21.2 `utils/loftq_utils.py::loftq_init` and `tuners/lora/layer.py::loftq_init`,
and yxli2123/LoftQ `quantize_save.py` @ae33fd4, which calls it). We call peft when CUDA is available. peft
0.21 has no CPU path (it dropped its own NFQuantizer in 0.20 and hard-codes the "cuda"/"xpu" compute
device), so on a CPU-only machine `_loftq_layer` runs the same loop on the weight's own device, with the
same bitsandbytes quantizer (NF4 blocksize 64, no double quantization; int8 row-wise for bits=8) and
peft's own `_low_rank_decomposition`. tests/test_init_loftq.py pins it equal to peft's function.

As in peft and the official code, the scaling alpha/r is not divided out: the init reconstructs
W ~ deq(Q) + B A, so W ~ deq(Q) + s*B*A only at alpha = r (configs/adapter/loftq.yaml: alpha = r = 16).

The base. peft leaves deq(Q) in the base layer in full precision; the official recipe saves that backbone
and reloads it with bitsandbytes 4-bit. Here:
- quant=nf4 (the setting LoftQ is for): the base deq(Q) is quantized after the init (lorabench/quantize.py).
  Re-quantizing deq(Q) gives back Q's NF4 codes exactly (each block's absmax element is its own code +-1);
  with quant.double_quant=true (QLoRA's default) the block absmax is then stored in 8 bits, as QLoRA
  stores any weight — set quant.double_quant=false for the official bit-exact Q (its train_gsm8k.py does).
- quant=none: the base is deq(Q) in full precision (peft's own result): LoftQ's init of a model that
  trains in full precision but starts from the quantized weights. Useful to compare; not the paper setting.
"""
from __future__ import annotations

import torch

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import ADAPTER, attach, base_weight, lora_config, lora_layers, set_base_weight, set_lora
from lorabench.errors import ConfigError


@torch.no_grad()
def _loftq_layer(weight: torch.Tensor, bits: int, rank: int, iters: int):
    """peft's loftq_init loop on weight's own device: (deq(Q) in fp32, lora_A, lora_B)."""
    import bitsandbytes as bnb
    from peft.utils.loftq_utils import _low_rank_decomposition

    w = weight.float()
    res = w
    for i in range(iters):
        if bits == 4:
            q = bnb.nn.Params4bit(res, requires_grad=False, compress_statistics=False, quant_type="nf4").to(w.device)
            deq = bnb.functional.dequantize_4bit(q.data, q.quant_state)
        else:
            q = bnb.nn.Int8Params(res, requires_grad=False).to(w.device)
            deq = bnb.functional.int8_vectorwise_dequant(q.data, q.SCB)
        lr = _low_rank_decomposition(w - deq, reduced_rank=rank)
        if i + 1 < iters:
            res = w - lr["L"] @ lr["R"]
    return deq.float(), lr["R"], lr["L"]


def loftq(model, adapter_cfg, batches, ctx):
    opts = options(adapter_cfg)
    bits, iters = int(opts["bits"]), int(opts["iters"])
    if torch.cuda.is_available():   # peft's own code (computes on the GPU whatever device the model is on)
        from peft import LoftQConfig

        model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, "loftq",
                                          loftq_config=LoftQConfig(loftq_bits=bits, loftq_iter=iters)))
    else:
        model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, True))
        for _, layer in lora_layers(model):
            deq, A, B = _loftq_layer(base_weight(layer), bits, layer.r[ADAPTER], iters)
            set_lora(layer, A, B)
            set_base_weight(layer, deq)
    ctx.extra["loftq"] = {"bits": bits, "iters": iters, "scaling": lora_layers(model)[0][1].scaling[ADAPTER],
                          "peft": torch.cuda.is_available()}
    return model


def check(adapter_cfg, opts, max_rank, where):
    if opts["bits"] not in (4, 8):
        raise ConfigError(f"adapter.options.bits={opts['bits']}: LoftQ quantizes to 4 (NF4) or 8 (int8) bits.")
    if int(opts["iters"]) < 1:
        raise ConfigError(f"adapter.options.iters={opts['iters']}: LoftQ needs at least 1 alternating iteration.")


register(InitMethod("loftq", loftq, defaults={"bits": 4, "iters": 1}, mutates_base=True, check=check,
                    supports_4bit=True, quantize_after_init=True))
