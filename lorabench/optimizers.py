"""Training-side methods, chosen by `adapter.optimizer` (an adapter config can name one, so a comparison lists it
in its `adapter:` sweep; `adapter=pissa adapter.optimizer=lora_pro` composes one with any plain-LoRA init):

- adamw: torch's AdamW (train.make_optimizer; LoRA+ through peft when trainer.loraplus_lr_ratio is set).
- lora_pro: LoRA-Pro (Wang et al. 2024, arXiv 2407.18242), `LoRAPro` below.
- allora: ALLoRA (Huang & Balestriero 2024, arXiv 2410.09692), `ALLoRA` below.

Both are written here: neither torch nor peft has them. Each is a torch Optimizer whose state lives in
`self.state` per parameter, so checkpoints, Accelerate's wrapper and the LR scheduler treat them as AdamW.

LoRA-Pro, checked against mrflogs/LoRA-Pro @fe26027 `DeepSpeed-0.15.1/deepspeed/runtime/zero/stage_1_and_2.py`
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

ALLoRA: no official code was found (searched GitHub; none linked from the paper). From the paper (abstract and
method): no dropout, no scaling factor (alpha = r, configs/adapter/allora.yaml), and Adam whose learning rate for
each row of A and B is lr / sqrt(||row||^2 + 1/eta^2), i.e. inversely proportional to the row's l2 norm, capped at
lr * eta for a zero row (B's rows at init). Our reconstruction of that coefficient (the exact placement of eta
could not be checked against a published implementation): options.eta, default 2. Other parameters: AdamW.
"""
from __future__ import annotations

import torch
from torch import nn

from lorabench.errors import ConfigError

NAMES = ("adamw", "lora_pro", "allora")
DEFAULTS = {"adamw": {}, "lora_pro": {}, "allora": {"eta": 2.0}}
BETAS, EPS, DELTA = (0.9, 0.999), 1e-8, 1e-8        # LoRA-Pro's constants (stage_1_and_2.py); ALLoRA: AdamW's


def options(adapter_cfg) -> dict:
    given = dict(adapter_cfg.get("optimizer_options") or {})
    return {**DEFAULTS[adapter_cfg.optimizer], **given}


def check(cfg) -> None:
    """Config-time: the method exists, its options are known, and the adapter is one it can train."""
    from lorabench.adapters import REGISTRY

    a = cfg.adapter
    name = a.optimizer
    if name not in NAMES:
        raise ConfigError(f"adapter.optimizer={name!r} is unknown; use one of {', '.join(NAMES)}.")
    unknown = set(a.get("optimizer_options") or {}) - set(DEFAULTS[name])
    if unknown:
        raise ConfigError(f"adapter.optimizer_options has {sorted(unknown)}, unknown to {name}; its options are: "
                          f"{', '.join(DEFAULTS[name]) or 'none'}.")
    if name == "adamw":
        return
    method = REGISTRY[a.init]
    if not (method.uses_adapter and method.plain_pairs):
        raise ConfigError(f"adapter.optimizer={name} adjusts the steps of plain LoRA pairs (A, B both trained); "
                          f"init '{a.init}' trains other factors. Use it with a plain-LoRA init (lora, pissa, "
                          "lora_ga, ...), or adapter.optimizer=adamw.")
    if name == "lora_pro" and a.use_dora:
        raise ConfigError("adapter.optimizer=lora_pro projects onto the updates s*B*A can make; DoRA's magnitude "
                          "changes them. Set adapter.use_dora=false.")
    if cfg.trainer.loraplus_lr_ratio is not None:
        raise ConfigError(f"trainer.loraplus_lr_ratio is AdamW's (LoRA+); adapter.optimizer={name} sets its own "
                          "steps. Remove one of them.")
    if cfg.distributed.zero_stage:
        raise ConfigError(f"adapter.optimizer={name} needs each LoRA matrix whole on every process; DeepSpeed ZeRO "
                          "partitions them. Use distributed=ddp.")
    if name == "allora" and not options(a)["eta"] > 0:
        raise ConfigError(f"adapter.optimizer_options.eta={options(a)['eta']} must be positive.")


def lora_pairs(model: nn.Module) -> list[tuple[nn.Parameter, nn.Parameter, float]]:
    """(A, B, scaling) of every LoRA layer whose A and B both train."""
    from lorabench.adapters.common import ADAPTER, lora_layers

    while hasattr(model, "module"):
        model = model.module
    out = []
    for _, layer in lora_layers(model):
        A, B = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        if isinstance(A, nn.Parameter) and A.requires_grad and B.requires_grad:
            out.append((A, B, float(layer.scaling[ADAPTER])))
    return out


def make(model: nn.Module, params: list, trainer_cfg, adapter_cfg) -> torch.optim.Optimizer:
    name, opts = adapter_cfg.optimizer, options(adapter_cfg)
    pairs = lora_pairs(model)
    if not pairs:
        raise ValueError(f"adapter.optimizer={name}: the model has no trainable LoRA pairs")
    paired = {id(p) for A, B, _ in pairs for p in (A, B)}
    others = [p for p in params if id(p) not in paired]
    lr, wd = trainer_cfg.lr, trainer_cfg.weight_decay
    if name == "lora_pro":
        groups = [{"params": [A, B], "scaling": s, "kind": "pair", "weight_decay": wd} for A, B, s in pairs]
        cls = LoRAPro
    else:
        groups = [{"params": [p for A, B, _ in pairs for p in (A, B)], "kind": "rows", "weight_decay": wd,
                   "eta": float(opts["eta"])}]
        cls = ALLoRA
    groups += [{"params": [p for p in others if p.ndim >= 2], "kind": "adamw", "weight_decay": wd},
               {"params": [p for p in others if p.ndim < 2], "kind": "adamw", "weight_decay": 0.0}]
    return cls([g for g in groups if g["params"]], lr=lr)


def adam_direction(state: dict, grad: torch.Tensor, key: str = "") -> torch.Tensor:
    """Bias-corrected Adam direction m^ / (sqrt(v^) + eps), updating the moments kept in `state` (fp32)."""
    grad = grad.float()
    if key + "exp_avg" not in state:
        state[key + "exp_avg"] = torch.zeros_like(grad)
        state[key + "exp_avg_sq"] = torch.zeros_like(grad)
        state[key + "step"] = 0
    state[key + "step"] += 1
    t = state[key + "step"]
    m, v = state[key + "exp_avg"], state[key + "exp_avg_sq"]
    m.lerp_(grad, 1 - BETAS[0])
    v.mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
    return (m / (1 - BETAS[0] ** t)) / ((v / (1 - BETAS[1] ** t)).sqrt() + EPS)


class _Adam(torch.optim.Optimizer):
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


def row_coefficients(p: torch.Tensor, eta: float) -> torch.Tensor:
    """ALLoRA's per-row learning-rate factor 1 / sqrt(||row||^2 + 1/eta^2), as a column (rows x 1)."""
    return (p.detach().float().square().sum(dim=1, keepdim=True) + 1.0 / eta ** 2).rsqrt()


class ALLoRA(_Adam):
    def _step_group(self, group):
        for p in group["params"]:
            if p.grad is None:
                continue
            c = row_coefficients(p, group["eta"])           # from the weights before this step
            direction = adam_direction(self.state[p], p.grad)
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_((c * direction).to(p.dtype), alpha=-group["lr"])


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


class LoRAPro(_Adam):
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
