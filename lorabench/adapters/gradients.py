"""The averaged full-weight gradient of every LoRA layer's base weight, for gradient-driven inits
(LoRA-GA, GoRA, LoRA-One).

    stats = {}
    grads = layer_gradients(peft_model, batches, accelerator, stats)   # {layer name: mean dL/dW, fp32, CPU}
    before = loss_before(peft_model, batches, stats, accelerator)      # the loss at B = 0; free without dropout

G is the mean over batches of each batch's gradient (each batch's loss is the model's own token mean, computed
as the training loop does: the LM head only where a response token is predicted; `train.loss_sum`), and
across processes the mean over every rank's batches: one process over all batches gives the same G as
several over their shards (LoRA-GA reproduce/run_exp.py `estimate_gradient`, GoRA grad_utils.py both
average per batch, then all-reduce-mean).

How: the adapters are attached with B = 0 and switched off for the pass (`disable_adapter`: the same output,
without the LoRA branch's forward and backward), and every parameter but the base weights is frozen.
- fp32 bases: autograd forms dL/dW itself, as peft's `preprocess_loraga` lets it; a post-accumulate hook moves
  each W.grad into an fp32 CPU accumulator as soon as it is complete, so at most a few layers' full gradients
  sit on the accelerator (the official codes offload per parameter the same way).
- half-precision and quantized bases: autograd flows from the input embeddings; a forward hook keeps each base
  layer's input x and a hook on its output gradient g forms dL/dW = g^T x in fp32 (autograd would round each
  batch's dL/dW to bf16) and moves it at once to the accumulator. It never asks for W.grad, so it works on 4-bit
  bitsandbytes bases, whose packed weights cannot carry one (the official LoRA-GA fork dequantizes on the fly
  for the same reason).
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Iterable

import torch
from torch import nn

from lorabench.adapters.common import lora_layers, transposed
from lorabench.train import is_seq2seq, loss_sum


def _inputs_require_grad(model: nn.Module) -> list:
    """Autograd from every embedding's output (an encoder-decoder embeds twice, through separate modules)."""
    return [m.register_forward_hook(lambda mod, inp, out: out.requires_grad_(True))
            for m in model.modules() if isinstance(m, nn.Embedding)]


def _autograd_can_form(layers) -> bool:
    """Every base weight a plain fp32 parameter: autograd's own dL/dW is then exactly what the hooks form."""
    return all(type(layer.get_base_layer().weight) is nn.Parameter
               and layer.get_base_layer().weight.dtype == torch.float32 for _, layer in layers)


def _add(acc: dict, name: str, grad: torch.Tensor) -> None:
    """Add one batch's dL/dW (out x in) into the fp32 CPU accumulator."""
    grad = grad.float().cpu()   # no copy for an fp32 CPU tensor
    acc[name] = grad.contiguous() if acc[name] is None else acc[name].add_(grad)   # all_reduce needs contiguous


def _weight_grad_hooks(layers, acc: dict) -> list:
    """Autograd accumulates W.grad; each is moved to `acc` as soon as it is complete (once per batch)."""
    def hook(name, in_by_out):
        def offload(w):
            grad, w.grad = w.grad, None
            _add(acc, name, grad.T if in_by_out else grad)   # GPT-2's Conv1D stores W as in x out
        return offload
    handles = []
    for name, layer in layers:
        w = layer.get_base_layer().weight
        w.requires_grad_(True)
        handles.append(w.register_post_accumulate_grad_hook(hook(name, transposed(layer))))
    return handles


def _activation_hooks(model: nn.Module, layers, acc: dict) -> list:
    """dL/dW = g^T x from each base layer's input x and output gradient g, in fp32, on W's device."""
    def hooks(name: str, base: nn.Module):
        def keep_input(mod, args, out):
            x = args[0].detach()

            def on_grad(g):
                g2, x2 = g.reshape(-1, g.shape[-1]).float(), x.reshape(-1, x.shape[-1]).float()
                if acc[name] is not None and g2.device == acc[name].device:
                    acc[name].addmm_(g2.T, x2)   # on a CPU: accumulate in place, no temporary of W's size
                else:
                    _add(acc, name, g2.T @ x2)
            if out.requires_grad:
                out.register_hook(on_grad)
        return base.register_forward_hook(keep_input)
    return [hooks(name, layer.get_base_layer()) for name, layer in layers] + _inputs_require_grad(model)


def layer_gradients(model: nn.Module, batches: Iterable[dict], accelerator=None,
                    stats: dict | None = None) -> dict[str, torch.Tensor]:
    """{layer name: mean dL/dW}; `stats`, when given, gets "loss": the mean per-batch loss of the pass."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("no LoRA layers: attach the adapter (B = 0) before estimating gradients")
    device = next(model.parameters()).device
    acc = {name: None for name, _ in layers}
    frozen = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training

    n, loss_total, seq2seq = 0, 0.0, is_seq2seq(model)
    with ExitStack() as stack:
        for p in model.parameters():
            p.requires_grad_(False)
        stack.callback(lambda: [p.requires_grad_(v) for p, v in frozen.items()])
        if hasattr(model, "disable_adapter"):   # B = 0: the base model's output, without the LoRA branch
            stack.enter_context(model.disable_adapter())
        handles = (_weight_grad_hooks(layers, acc) if _autograd_can_form(layers)
                   else _activation_hooks(model, layers, acc))
        stack.callback(lambda: [h.remove() for h in handles])
        model.train()   # as the official codes (dropout-free models give the same G in eval mode)
        for batch in batches:
            if "labels" in batch and bool((batch["labels"] == -100).all()):
                continue   # truncation left no supervised token: no loss, no gradient, not counted
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, tokens = loss_sum(model, batch, seq2seq)   # the model's own token mean, with the training
            loss = loss / tokens                               # loop's response-only LM head
            loss.backward()
            loss_total += loss.item()
            n += 1
        model.train(was_training)

    count = torch.tensor([float(n), loss_total], dtype=torch.float64)
    if accelerator is not None and accelerator.num_processes > 1:
        count = _all_reduce_sum(count, accelerator)
        for name, layer in layers:   # one layer at a time through the accelerator
            g = acc[name] if acc[name] is not None else torch.zeros(layer.out_features, layer.in_features)
            acc[name] = _all_reduce_sum(g, accelerator)
    count, loss_total = count.tolist()
    if count == 0:
        raise ValueError("gradient estimation got no batches: set adapter.init_batches > 0")
    if stats is not None:
        stats["loss"] = loss_total / count
    missing = [name for name, g in acc.items() if g is None]
    if missing:
        raise ValueError(f"no gradient reached {missing[:3]}...: these layers are not on the loss's path")
    return {name: g.div_(count) for name, g in acc.items()}


def _all_reduce_sum(t: torch.Tensor, accelerator) -> torch.Tensor:
    import torch.distributed as dist

    dev = accelerator.device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = t.to(dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def dropout_free(model: nn.Module) -> bool:
    """No dropout anywhere (modules or the config's attention/hidden dropout): train mode computes what eval
    mode does, so the gradient pass's loss is the model's loss."""
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        return False
    config = getattr(model, "config", None)
    settings = config.to_dict() if hasattr(config, "to_dict") else {}
    return not any("dropout" in k and isinstance(v, (int, float)) and v > 0 for k, v in settings.items())


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Iterable[dict], accelerator=None) -> float:
    """The model's mean per-batch loss in eval mode, over every process's batches, as G averages them (a batch
    without a supervised token is skipped, as G skips it)."""
    device = next(model.parameters()).device
    was_training, seq2seq = model.training, is_seq2seq(model)
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        if "labels" in batch and bool((batch["labels"] == -100).all()):
            continue
        loss, tokens = loss_sum(model, {k: v.to(device) for k, v in batch.items()}, seq2seq)
        total += torch.tensor([(loss / tokens).item(), 1.0], dtype=torch.float64)
    model.train(was_training)
    if accelerator is not None and accelerator.num_processes > 1:
        total = _all_reduce_sum(total, accelerator)
    return (total[0] / total[1]).item()


def loss_before(model: nn.Module, batches: Iterable[dict], stats: dict, accelerator=None) -> float:
    """The init batches' loss of the model as the gradient pass saw it (B = 0): that pass's own loss when the
    model has no dropout (no extra forward pass), else an eval-mode pass (`mean_loss`)."""
    return stats["loss"] if dropout_free(model) else mean_loss(model, batches, accelerator)
