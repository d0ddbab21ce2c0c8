"""Prompt/response pairs -> token ids with loss on the response only; batching for training and init."""
from __future__ import annotations

import torch

IGNORE = -100


def tokenize_sft(examples: list[dict], tokenizer, max_length: int) -> list[dict]:
    """{'prompt', 'response'} -> {'input_ids', 'labels'}; prompt tokens are masked from the loss.

    Prompt and response are tokenized separately and concatenated, so the boundary is exact; the
    response ends with EOS so the model learns to stop. Too-long samples are truncated on the right.
    """
    out = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for ex in examples:
        p = tokenizer(ex["prompt"])["input_ids"]
        r = tokenizer(ex["response"], add_special_tokens=False)["input_ids"] + eos
        ids = (p + r)[:max_length]
        labels = ([IGNORE] * len(p) + r)[:max_length]
        out.append({"input_ids": ids, "labels": labels})
    return out


def collate(batch: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of tokenized samples into tensors (training never generates, so right is fine)."""
    n = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[i, :k] = torch.tensor(b["input_ids"])
        labels[i, :k] = torch.tensor(b["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(samples: list[dict], batch_size: int, pad_id: int, order: list[int] | None = None):
    """Yield collated batches of `samples` in `order` (default: as given)."""
    order = list(range(len(samples))) if order is None else order
    for i in range(0, len(order), batch_size):
        yield collate([samples[j] for j in order[i:i + batch_size]], pad_id)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of one epoch: a pure function of (seed, epoch), so resume can replay it."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()
