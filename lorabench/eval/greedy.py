"""Greedy decoding for a batch of left-padded prompts that retires each row as soon as it is finished.

`model.generate` keeps every row of a batch in the forward pass until the last row ends: a row that hit EOS or
a stop string after 20 tokens is still computed (and its KV cache grown) for the other rows' 500. Here
finished rows leave the batch (their KV cache rows dropped) once they are a quarter of it: dropping copies the
whole cache, about what two steps of attention read, so it is done in bulk, not for every row that ends.
Each step is the forward `generate` runs (the same inputs, positions, mask and cache); outputs equal
`generate`'s greedy ones except where a smaller batch shape rounds a near-tie argmax the other way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

PREFILL_ROWS = 16   # prompts per prefill forward: each pads only to its own longest (the batch's are length-sorted)

# Generation-config fields that make `generate`'s greedy step more than an argmax: with any of them set, the
# caller falls back to `generate` rather than silently decoding differently.
_PROCESSORS = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
               "suppress_tokens": (None,), "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,),
               "forced_eos_token_id": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
               "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0)}


def supported(model) -> bool:
    """A decoder-only model whose greedy step `generate` would not alter (no logits processors)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    gc = getattr(model, "generation_config", None)
    return gc is None or all(getattr(gc, k, None) in ok for k, ok in _PROCESSORS.items())


def eos_ids(model, tokenizer) -> set[int]:
    gc = getattr(model, "generation_config", None)
    ids = getattr(gc, "eos_token_id", None) if gc is not None else None
    if ids is None:
        ids = tokenizer.eos_token_id
    return set([ids] if isinstance(ids, int) else (ids or []))


def _positions(mask):
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)   # as generate's position ids


@torch.no_grad()
def prefill(model, ids, mask):
    """(last-position logits, KV cache, mask) of left-padded prompts. The prompts go through in groups of
    PREFILL_ROWS, each cut to its own longest prompt, and the groups' caches are joined, left-padded to the
    batch's width with masked zeros: a batch of short and long prompts no longer prefills every prompt at the
    longest one's length (GSM8K's 64 test prompts: 4241 tokens, 8576 when padded together)."""
    width = int(mask.sum(-1).max())
    ids, mask = ids[:, -width:], mask[:, -width:]
    groups = [range(i, min(i + PREFILL_ROWS, len(ids))) for i in range(0, len(ids), PREFILL_ROWS)]
    parts = []
    for g in groups:
        n = int(mask[g.start:g.stop].sum(-1).max())
        sub_ids, sub_mask = ids[g.start:g.stop, -n:], mask[g.start:g.stop, -n:]
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=sub_ids, attention_mask=sub_mask, position_ids=_positions(sub_mask), cache=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
        parts.append((logits, cache, width - n))
    if len(parts) == 1:
        return parts[0][0], parts[0][1], mask
    cache = parts[0][1]
    if not all(type(layer) is DynamicLayer for _, c, _ in parts for layer in c.layers):
        cache = DynamicCache(config=model.config)   # sliding-window or other layers: one prefill, padded together
        logits = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), cache=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
        return logits, cache, mask
    for i, layer in enumerate(cache.layers):   # [batch, heads, seq, dim]: pad seq on the left, join batches
        layer.keys = torch.cat([F.pad(c.layers[i].keys, (0, 0, pad, 0)) for _, c, pad in parts])
        layer.values = torch.cat([F.pad(c.layers[i].values, (0, 0, pad, 0)) for _, c, pad in parts])
    return torch.cat([lg for lg, _, _ in parts]), cache, mask


@torch.no_grad()
def decode(model, tokenizer, enc, max_new_tokens: int, stops: list[str]) -> list[list[int]]:
    """New token ids per row of `enc` (left-padded input_ids and attention_mask), up to and with EOS."""
    mask = enc["attention_mask"]
    rows = torch.arange(mask.shape[0])                   # which original row each batch row is
    out: list[list[int]] = [[] for _ in range(mask.shape[0])]
    eos = eos_ids(model, tokenizer)
    window = max((len(s) for s in stops), default=0) + 2   # tokens that can hold a stop string (ASCII: >= 1 char each)
    logits, cache, mask = prefill(model, enc["input_ids"], mask)
    alive = [True] * len(rows)   # a finished row computes on (its tokens unused) until the batch is compacted
    for step in range(max_new_tokens):
        if step:
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                           logits_to_keep=1).logits[:, -1]
        nxt = logits.argmax(-1)
        for j, (r, t) in enumerate(zip(rows.tolist(), nxt.tolist())):
            if not alive[j]:
                continue
            out[r].append(t)   # an EOS too, as generate keeps it (decoding skips it where it is a special token)
            if t in eos:
                alive[j] = False
            elif stops and any(s in tokenizer.decode(out[r][-window:], skip_special_tokens=True) for s in stops):
                alive[j] = False
        if step == max_new_tokens - 1 or not any(alive):
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        ids, pos = nxt[:, None], mask.long().sum(-1, keepdim=True) - 1
        if 4 * alive.count(False) >= len(alive):   # retire finished rows: the batch, mask and KV cache shrink
            keep = torch.tensor([j for j, a in enumerate(alive) if a], device=mask.device)
            cache.batch_select_indices(keep)
            rows, mask, ids, pos = rows[keep.cpu()], mask[keep], ids[keep], pos[keep]
            alive = [True] * len(keep)
    return out
