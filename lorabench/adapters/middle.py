"""Three-factor adapters, s * B M A: a small r x r (or diagonal) matrix M between LoRA's B and A, for the methods
that train M alone or with the factors (LoRA-SB, NLoRA / IntTune, LoLDU).

peft has no such layer, so each LoRA layer's `lora_A` module is replaced by `MiddleA`, which maps x to M (A x):
peft's forward computes B(lora_A(x)) * s as for any LoRA, and its merge reads `lora_A.weight`, here the product
M A. Which of B, M, A train is a flag per factor. Saved adapters are plain LoRA (A' = M A, B; `plain`), so
`PeftModel.from_pretrained` reloads them with peft alone.

Why not torch's parametrizations: the state dict of a parametrized lora_A would need the same plain export,
and a module of our own keeps M and A as named parameters (M is what the optimizer sees, not M A).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from lorabench.adapters.common import ADAPTER, lora_layers


class MiddleA(nn.Module):
    """x -> scale * M (A x): M is r x r, or a vector of r (a diagonal); `scale` a learnable scalar (LoLDU) or
    None. Stands in for a LoRA layer's lora_A (r x in)."""

    def __init__(self, A: torch.Tensor, M: torch.Tensor, train_A: bool, train_M: bool = True,
                 learn_scale: bool = False):
        super().__init__()
        # A frozen factor is a buffer, not a parameter: peft's enable/set_adapter marks every parameter of an
        # adapter module trainable again (e.g. leaving `disable_adapter()`), a buffer it cannot unfreeze
        if train_A:
            self.A = nn.Parameter(A.contiguous())
        else:
            self.register_buffer("A", A.contiguous())
        self.M = nn.Parameter(M.contiguous(), requires_grad=train_M)
        self.scale = nn.Parameter(torch.ones((), dtype=A.dtype, device=A.device)) if learn_scale else None

    @property
    def diagonal(self) -> bool:
        return self.M.ndim == 1

    @property
    def weight(self) -> torch.Tensor:
        """The r x in matrix this module multiplies by: what peft's merge and our export read."""
        w = self.M[:, None] * self.A if self.diagonal else self.M @ self.A
        return w if self.scale is None else self.scale * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.A)
        y = y * self.M if self.diagonal else F.linear(y, self.M)
        return y if self.scale is None else y * self.scale


def install(layer: nn.Module, A: torch.Tensor, M: torch.Tensor, B: torch.Tensor, train_A: bool, train_B: bool,
            train_M: bool = True, learn_scale: bool = False) -> MiddleA:
    """Replace the layer's lora_A by MiddleA(A, M) and set B (out x r), in the adapter's dtype and device."""
    old = layer.lora_A[ADAPTER].weight
    cast = dict(device=old.device, dtype=old.dtype)
    mid = MiddleA(A.to(**cast), M.to(**cast), train_A, train_M, learn_scale)
    layer.lora_A[ADAPTER] = mid
    b = layer.lora_B[ADAPTER].weight
    b.data = B.to(device=b.device, dtype=b.dtype).contiguous()
    b.requires_grad_(train_B)
    if not train_B:   # declared frozen the way peft's own variants do (MiCA's B), so set_adapter keeps it frozen
        names = dict(layer.frozen_peft_weight_names)
        names[ADAPTER] = tuple({*names.get(ADAPTER, ()), "lora_B"})
        layer.frozen_peft_weight_names = names
    return mid


def middles(model: nn.Module) -> list[tuple[nn.Module, MiddleA]]:
    return [(layer, layer.lora_A[ADAPTER]) for _, layer in lora_layers(model)
            if isinstance(layer.lora_A[ADAPTER], MiddleA)]


@contextmanager
def plain(model: nn.Module):
    """Within: every MiddleA is a plain nn.Linear holding M A (so peft saves a plain LoRA); restored after."""
    swapped = []
    for layer, mid in middles(model):
        lin = nn.Linear(mid.A.shape[1], mid.A.shape[0], bias=False, device="meta")
        lin.weight = nn.Parameter(mid.weight.detach().clone(), requires_grad=False)
        layer.lora_A[ADAPTER] = lin
        swapped.append((layer, mid))
    try:
        yield model
    finally:
        for layer, mid in swapped:
            layer.lora_A[ADAPTER] = mid
