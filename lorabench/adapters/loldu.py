"""LoLDU (Shi et al. 2024, arXiv 2410.13618): an LDU decomposition of W initializes the adapter, and only its
diagonal (plus one learnable scalar per layer) trains.

Checked against SKDDJ/LoLDU @4fe87a0 `minloldu/loldu.py` (`ldu_decomposition`, `LoLDUParametrization.
get_residual_matrix` with init "ldu" / init_method "lu", `loldu_forward`):
    P, L, U' = lu(W) (partial pivoting),  D = diag(U'),  U = U' / D (unit upper triangular),  so W = P L diag(D) U;
    L_r = L[:, :r], D_r = D[:r], U_r = U[:r]  (the first r pivots: LU has no ordering by magnitude);
    delta W = c * P L_r diag(z) U_r  with z = D_r at init and only z and the scalar c trained;
    W_res = W - c * P L_r diag(D_r) U_r, so the output is unchanged at init.
Here B = P L_r (frozen), A = U_r (frozen), M = z (middle.MiddleA, a diagonal) and c = s * scale, scale a
learnable scalar starting at 1 and s = alpha/r the layer's scaling.
Deviations: the official learnable scalar is c itself, initialized to alpha/r; ours is c/s, so Adam's steps on
it are s times larger in c (the same at alpha = r, configs/adapter/loldu.yaml); the official code applies the
update to the weight (W_res + delta W) before the layer's linear map, we add it as a LoRA branch (the same
function). The saved adapter is peft's rank-2r plain LoRA for the unmodified base (W changed at init).
Not supported: 4-bit (the residual would have to be quantized after the init, and our QPiSSA path re-attaches
a plain LoRA, dropping the diagonal), DoRA, ZeRO: refused at config time.
"""
from __future__ import annotations

import torch

from lorabench.adapters import InitMethod, register
from lorabench.adapters.common import ADAPTER, attach, base_weight, lora_config, lora_layers, offset_base
from lorabench.adapters.decompose import svd_device
from lorabench.adapters.lora_sb import check_three_factor
from lorabench.adapters.middle import install


def ldu(w: torch.Tensor):
    """P, L, D, U with w = P L diag(D) U; L unit lower, U unit upper triangular (trapezoidal for a non-square w)."""
    P, L, U = torch.linalg.lu(w)
    D = torch.diagonal(U)
    return P, L, D, U / D[:, None]


def loldu_factors(w: torch.Tensor, r: int):
    """B = P L_r (out x r), z = D_r (r), A = U_r (r x in)."""
    P, L, D, U = ldu(w)
    return P @ L[:, :r], D[:r], U[:r]


@torch.no_grad()
def loldu(model, adapter_cfg, batches, ctx):
    model = attach(model, lora_config(model, adapter_cfg, ctx.task_type, False))   # A and B are set below
    for _, layer in lora_layers(model):
        B, z, A = loldu_factors(base_weight(layer).to(svd_device(layer)), layer.r[ADAPTER])
        install(layer, A=A, M=z, B=B, train_A=False, train_B=False, learn_scale=True)   # z and the scalar train
        offset_base(layer)     # W_res = W - s * B diag(z) A: reads the three-factor product
    model.peft_config[ADAPTER].init_lora_weights = False
    return model


register(InitMethod("loldu", loldu, mutates_base=True, zero=False, plain_pairs=False,
                    check=check_three_factor))
