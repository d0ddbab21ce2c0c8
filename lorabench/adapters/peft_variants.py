"""MiCA and KaSA: two SVD-based LoRA variants that peft 0.21 implements, run through peft's own code.

MiCA (Minor Component Adaptation, arXiv 2604.01694): B = the r left singular vectors of W with the smallest
singular values, A = 0, and B frozen (only A trains); W and the model's output are unchanged at init. peft
`init_lora_weights="mica"` (tuners/lora/layer.py `LoraLayer.mica_init`, tuners/lora/variants.py
`MiCALinearVariant`, peft 0.21.2), which is what we run: the paper publishes no code of its own that we
could check against, so peft's is the reference (and MiLoRA, which adapts the same minor subspace but with
both factors trained from the minor triplets and W offset, is its nearest peer).

KaSA (Knowledge-aware Singular-value Adaptation, arXiv 2412.06071, official juyongjiang/KaSA @f85e88c
main.py and its peft fork): W is replaced by its rank-(k - r) truncation (the r smallest singular components
dropped, k = min(out, in)), and the update is s * B diag(d) A with B = 0, A kaiming, d ~ N(0, 1) all
trained, plus the auxiliary loss beta * ||d||^2 + gamma * (||B^T B - I||_F + ||A A^T - I||_F). peft 0.21.2
`LoraConfig(kasa_config=KasaConfig(beta, gamma))` (tuners/lora/variants.py `KasaLinearVariant`,
`_kasa_layer_regularization_loss`, LoraModel `_get_kasa_loss`), which is what we run; the training loop adds
the regularizer through lorabench/regularizers.py. Deviations, all peft's: the regularizer is summed over
layers where the official main.py divides it by the number of layers, and its orthogonality terms are the
r x r Gram matrices of the paper's Eq. 11 where main.py forms A^T A and B B^T (in x in, out x out).
Because the truncation changes W, the model's output changes at init: by exactly the dropped components
(tests/test_init_kasa.py). The saved adapter is KaSA's own peft format (peft cannot convert it to a plain
LoRA: the truncation is not a low-rank update of the same rank); `PeftModel.from_pretrained` on the original
base re-runs the deterministic truncation and loads A, B and d.

Neither supports a 4-bit base here: both take a full-precision SVD of W inside peft's layer init, which
raises on packed 4-bit weights, and our QPiSSA path (quantize after the init) re-attaches a plain LoRA,
which would drop MiCA's frozen B and KaSA's diagonal.
"""
from __future__ import annotations

from lorabench.adapters import InitMethod, options, register
from lorabench.adapters.common import attach, lora_config
from lorabench.errors import ConfigError


def mica(model, adapter_cfg, batches, ctx):
    return attach(model, lora_config(model, adapter_cfg, ctx.task_type, "mica"))


def kasa(model, adapter_cfg, batches, ctx):
    from peft import KasaConfig

    opts = options(adapter_cfg)
    config = lora_config(model, adapter_cfg, ctx.task_type, True,
                         kasa_config=KasaConfig(beta=opts["beta"], gamma=opts["gamma"]))
    return attach(model, config)


def _no_dora(adapter_cfg, opts, max_rank, where):
    if adapter_cfg.use_dora:
        raise ConfigError(f"adapter.use_dora=true with init '{adapter_cfg.init}': peft runs {adapter_cfg.init} as a "
                          "LoRA variant of its own, which does not compose with DoRA's. Set adapter.use_dora=false.")


def check_kasa(adapter_cfg, opts, max_rank, where):
    _no_dora(adapter_cfg, opts, max_rank, where)
    for key in ("beta", "gamma"):
        if not (isinstance(opts[key], (int, float)) and opts[key] >= 0):
            raise ConfigError(f"adapter.options.{key}={opts[key]!r} must be a number >= 0 (KaSA's GLUE setting: "
                              "beta=1e-4, gamma=1e-3).")
    if adapter_cfg.r >= max_rank:
        raise ConfigError(f"adapter.r={adapter_cfg.r} with KaSA drops r singular components of every target layer, "
                          f"but {where}: at least one must remain. Use adapter.r < {max_rank}.")


register(InitMethod("mica", mica, plain_pairs=False, check=_no_dora))
register(InitMethod("kasa", kasa, defaults={"beta": 1e-4, "gamma": 1e-3}, plain_pairs=False,
                    check=check_kasa))
