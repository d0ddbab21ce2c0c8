"""Multiple choice by log-likelihood, as lm-evaluation-harness scores `output_type: multiple_choice`.

A request is a (context, continuation) pair; its score is the sum of the continuation tokens' log-probabilities
given the context. Pairs are encoded as lm-eval's `_encode_pair` does: trailing spaces of the context move to the
continuation, the pair is tokenized whole, and the continuation is every token after `len(tokenize(context))`
(a token straddling the boundary counts to the continuation). Unlike lm-eval's HF backend, the tokenizer's own
special tokens are kept (a BOS where the tokenizer adds one), as in training (`data.tokenize_sft`).

`choose` picks a choice: acc is the argmax of the sums; acc_norm the argmax of sum / length of the choice in
characters (lm-eval `ConfigurableTask.process_results`: `completion_len = len(choice)`, the choice without the
target delimiter; its `acc_bytes` would use UTF-8 bytes instead).
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """(token ids of context + continuation, how many trailing ids are the continuation)."""
    n_spaces = len(context) - len(context.rstrip(" "))
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    n_ctx = len(tokenizer(context)["input_ids"])
    if n_ctx == 0:   # nothing to condition on (no context, no BOS): start from a BOS/EOS token, as lm-eval does
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        whole, n_ctx = [prefix] + whole, 1
    n_cont = len(whole) - n_ctx
    if n_cont < 1:
        raise ValueError(f"continuation {continuation!r} adds no token to context {context[-40:]!r}")
    return whole, n_cont


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, seq in enumerate(rows):
        ids[r, -len(seq):], mask[r, -len(seq):] = torch.tensor(seq), 1
    return ids, mask


def _batches(groups: list[tuple[tuple[int, ...], list[int]]], rows: int):
    """Consecutive groups holding about `rows` continuations together (a group is never split)."""
    batch, n = [], 0
    for g in groups:
        batch.append(g)
        n += len(g[1])
        if n >= rows:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


@torch.no_grad()
def loglikelihoods(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 16,
                   max_length: int | None = None, desc: str = "loglik", show_progress: bool = True) -> list[float]:
    """Sum of log p(continuation | context) for each (context, continuation), in the order given.

    The choices of a question share their context, so a batch runs in two forward passes: the distinct
    contexts (left-padded, position ids counted from each row's first real token, KV cache kept; their last
    logits score each continuation's first token), then every continuation of the batch after its context's
    cache rows (right-padded; skipped when all continuations are one token). `batch_size` bounds the
    continuations per batch. Inputs longer than `max_length` lose context tokens on the left, as in lm-eval.
    """
    encoded = [encode_pair(tokenizer, c, x) for c, x in requests]
    if max_length is not None:
        encoded = [(ids[-(max_length + 1):], n) for ids, n in encoded]
        if any(n >= len(ids) for ids, n in encoded):
            raise ValueError(f"a continuation is longer than max_length={max_length} tokens")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ids, n) in enumerate(encoded):
        groups.setdefault(tuple(ids[:-n]), []).append(i)
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[0]))   # similar lengths share a batch
    out = [0.0] * len(encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(encoded), desc=desc, unit="pair", disable=not show_progress, leave=False)
    for batch in _batches(ordered, batch_size):
        ids, mask = _left_pad([list(ctx) for ctx, _ in batch], pad)
        res = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device), use_cache=True, logits_to_keep=1)
        first = res.logits[:, -1].float().log_softmax(-1)
        members = [(g, i) for g, (_, idx) in enumerate(batch) for i in idx]
        conts = [encoded[i][0][-encoded[i][1]:] for _, i in members]
        for (g, i), cont in zip(members, conts):
            out[i] = first[g, cont[0]].item()
        width = max(len(c) for c in conts) - 1
        if width > 0:   # the rest of each continuation, its context's cache rows repeated per choice
            rows = torch.tensor([g for g, _ in members])
            cache = res.cache   # transformers 5: `cache` (the old name logs a deprecation warning per run)
            cache.reorder_cache(rows.to(device))
            cont_ids = torch.full((len(conts), width), pad, dtype=torch.long)
            cont_mask = torch.zeros_like(cont_ids)
            for r, c in enumerate(conts):
                cont_ids[r, :len(c) - 1], cont_mask[r, :len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long), 1
            positions = mask.sum(-1)[rows, None] + torch.arange(width)
            full_mask = torch.cat([mask[rows], cont_mask], 1)
            logits = model(input_ids=cont_ids.to(device), attention_mask=full_mask.to(device),
                           position_ids=positions.to(device), cache=cache, use_cache=True).logits
            logprobs = logits.float().log_softmax(-1)
            for r, ((_, i), c) in enumerate(zip(members, conts)):
                if len(c) > 1:
                    target = torch.tensor(c[1:], device=logprobs.device)
                    out[i] += logprobs[r, :len(c) - 1].gather(-1, target[:, None]).sum().item()
        bar.update(len(members))
    bar.close()
    model.train(was_training)
    return out


def choose(scores: list[float], lengths: list[int]) -> tuple[int, int]:
    """(acc prediction, acc_norm prediction): argmax of the scores and of score / length; ties go to the first."""
    norm = [s / n for s, n in zip(scores, lengths)]
    return max(range(len(scores)), key=scores.__getitem__), max(range(len(norm)), key=norm.__getitem__)
