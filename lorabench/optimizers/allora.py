"""ALLoRA (Huang & Balestriero 2024, arXiv 2410.09692): LoRA without dropout or scaling factor (alpha = r,
configs/adapter/allora.yaml), trained with a learning rate per row of A and B inversely proportional to the row's
l2 norm.

No official code was found (GitHub search; the paper links none), and only the paper's abstract was readable
here: "scaling the per sample and per parameter gradients with a coefficient inversely proportional to
parameters' l2 norm". What we implement is our reading of it, to be checked against the paper's method section:
Adam's direction for row i of A or B is multiplied by c_i = 1 / sqrt(||row_i||^2 + 1/eta^2) (the rows' norms
before the step), so a zero row (B at LoRA's init) steps lr * eta and a large row lr / ||row||; eta is
options.eta (default 2, a value we chose). Applied to Adam's step rather than to the raw gradient, because Adam
divides a per-row constant factor of the gradient out again. Parameters outside the LoRA pairs take AdamW.
"""
from __future__ import annotations

import torch

from lorabench.optimizers.adam import AdamBase, adam_direction


def row_coefficients(p: torch.Tensor, eta: float) -> torch.Tensor:
    """ALLoRA's per-row learning-rate factor 1 / sqrt(||row||^2 + 1/eta^2), as a column (rows x 1)."""
    return (p.detach().float().square().sum(dim=1, keepdim=True) + 1.0 / eta ** 2).rsqrt()


class ALLoRA(AdamBase):
    def _step_group(self, group):
        for p in group["params"]:
            if p.grad is None:
                continue
            c = row_coefficients(p, group["eta"])           # from the weights before this step
            direction = adam_direction(self.state[p], p.grad)
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_((c * direction).to(p.dtype), alpha=-group["lr"])
