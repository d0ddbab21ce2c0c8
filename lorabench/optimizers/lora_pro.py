"""LoRA-Pro, checked against mrflogs/LoRA-Pro @fe26027 `DeepSpeed-0.15.1/deepspeed/runtime/zero/stage_1_and_2.py`
(`lorapro_full_adjustment`, `solve_sylvester`; README: the Trainer's optimizer is "sgd" so that the adjusted
gradients are applied once). Per LoRA layer (A r x in, B out x r, scaling s), each step:
  1. the equivalent full gradient of the LoRA gradients gA, gB (delta = 1e-8 damps the pseudo-inverses):
       first step (B = 0): ~gA = gA, ~gB = gB (A A^T)^+ / s^2
       later:  ~gA = (B^T B)^+ gA / s^2,  ~gB = (I - B (B^T B)^+ B^T) gB (A A^T)^+ / s^2
       g~ = s B ~gA + s ~gB A
  2. Adam on g~ in the full out x in space (beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected): direction g;
  3. the LoRA gradients that follow g as closely as a rank-r update can: with gA' = s B^T g, gB' = s g A^T,
       first step: gA = gA', gB = gB' (A A^T)^+ / s^2
       later: X solves (B^T B) X + X (A A^T) = -(B^T B)^+ gA' A^T / s^2 (Sylvester),
              gA = (B^T B)^+ gA' / s^2 + X A,  gB = (I - B (B^T B)^+ B^T) gB' (A A^T)^+ / s^2 - B X
     so that s (B gA + gB A) = P_B g + g P_A - P_B g P_A: the orthogonal projection of g onto the updates a
     rank-r adapter can make (the least-squares solution; tests/test_lora_pro.py solves it directly);
  4. SGD: A -= lr gA, B -= lr gB (with trainer.weight_decay as SGD's L2 term on them, as HF's "sgd").
Deviations: the official hard-codes s = 16/8; we use each layer's own scaling. It takes the first-step
formulas at global step 0, where LoRA's init has B = 0; we take them while B = 0, so that an init with B != 0
(adapter=pissa adapter.optimizer=lora_pro) gets the general ones from its first step (the same under LoRA's
init). It keeps the second moment in
bf16; we keep it in fp32. Its gradient clipping scales the adjusted gradients by the raw gradients' norm; our
loop clips the raw gradients before the step (train.py), so Adam's moments see clipped inputs. The Sylvester
equation is solved with eigh (both matrices are symmetric) where the official uses a complex eig: the same
solution. Trainable parameters outside LoRA pairs (a classification head) take AdamW.
"""
from __future__ import annotations

import torch

from lorabench.optimizers.adam import AdamBase, adam_direction

DELTA = 1e-8     # the official damping of the pseudo-inverses


def _pinv(m: torch.Tensor) -> torch.Tensor:
    return torch.linalg.pinv(m + DELTA * torch.eye(m.shape[0], dtype=m.dtype, device=m.device))


def sylvester(P: torch.Tensor, Q: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """X with P X + X Q = C, for symmetric P and Q (here B^T B and A A^T): in their eigenbases it is elementwise."""
    lp, Up = torch.linalg.eigh(P.double())
    lq, Uq = torch.linalg.eigh(Q.double())
    X = Up @ ((Up.T @ C.double() @ Uq) / (lp[:, None] + lq[None, :])) @ Uq.T
    return X.to(C.dtype)


def equivalent_gradient(A, B, gA, gB, s: float, first: bool) -> torch.Tensor:
    """LoRA-Pro's g~: the full-space gradient the LoRA gradients (gA, gB) stand for (step 1 above)."""
    AAt_inv = _pinv(A @ A.T)
    if first:
        tA, tB = gA, gB @ AAt_inv / s ** 2
    else:
        BtB_inv = _pinv(B.T @ B)
        tA = BtB_inv @ gA / s ** 2
        tB = (gB - B @ (BtB_inv @ (B.T @ gB))) @ AAt_inv / s ** 2
    return s * B @ tA + s * tB @ A


def adjusted_gradients(A, B, g, s: float, first: bool):
    """LoRA-Pro's gA, gB for a full-space direction g (step 3 above): s (B gA + gB A) is g's projection."""
    gA_, gB_ = s * B.T @ g, s * g @ A.T
    AAt_inv = _pinv(A @ A.T)
    if first:
        return gA_, gB_ @ AAt_inv / s ** 2
    BtB_inv = _pinv(B.T @ B)
    X = sylvester(B.T @ B, A @ A.T, -(BtB_inv @ gA_ @ A.T) / s ** 2)
    gA = BtB_inv @ gA_ / s ** 2 + X @ A
    gB = (gB_ - B @ (BtB_inv @ (B.T @ gB_))) @ AAt_inv / s ** 2 - B @ X
    return gA, gB


class LoRAPro(AdamBase):
    def _step_group(self, group):
        A, B = group["params"]
        if A.grad is None or B.grad is None:
            return
        s, state = group["scaling"], self.state[A]
        first = not bool(B.detach().any())   # the official's "global_step == 0", i.e. B = 0 under LoRA's init
        a, b = A.detach().float(), B.detach().float()
        equiv = equivalent_gradient(a, b, A.grad.float(), B.grad.float(), s, first)
        g = adam_direction(state, equiv)
        gA, gB = adjusted_gradients(a, b, g, s, first)
        for p, d in ((A, gA), (B, gB)):                      # SGD, with weight decay as SGD's L2 term
            if group["weight_decay"]:
                d = d + group["weight_decay"] * p.detach().float()
            p.add_(d.to(p.dtype), alpha=-group["lr"])
