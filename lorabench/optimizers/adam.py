"""Adam's bias-corrected direction and an AdamW base for the training-side optimizers (their non-LoRA
parameters, e.g. a classification head, take plain AdamW)."""
from __future__ import annotations

import torch

BETAS, EPS = (0.9, 0.999), 1e-8        # LoRA-Pro's constants (stage_1_and_2.py), AdamW's defaults


def adam_direction(state: dict, grad: torch.Tensor) -> torch.Tensor:
    """Bias-corrected Adam direction m^ / (sqrt(v^) + eps), updating the moments kept in `state` (fp32)."""
    grad = grad.float()
    if "exp_avg" not in state:
        state.update(exp_avg=torch.zeros_like(grad), exp_avg_sq=torch.zeros_like(grad), step=0)
    state["step"] += 1
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.lerp_(grad, 1 - BETAS[0])
    v.mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
    return (m / (1 - BETAS[0] ** t)) / ((v / (1 - BETAS[1] ** t)).sqrt() + EPS)


class AdamBase(torch.optim.Optimizer):
    """AdamW on the "adamw" groups; subclasses handle their own groups in `_step_group`."""

    def __init__(self, groups, lr: float):
        super().__init__(groups, {"lr": lr, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if group["kind"] == "adamw":
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                        p.add_(adam_direction(self.state[p], p.grad).to(p.dtype), alpha=-group["lr"])
            else:
                self._step_group(group)
