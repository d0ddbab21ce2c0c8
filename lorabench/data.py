"""Task examples -> model inputs, and batching for training and init.

Three shapes, each in Hugging Face's own input names so `model(**batch).loss` works for every one:
- causal LM  : input_ids = prompt + response, labels = the same with prompt tokens masked (-100)
- seq2seq    : input_ids = prompt (encoder), labels = response (decoder targets)
- classifier : input_ids (+ token_type_ids) of text [, text_pair], labels = class id (or float for regression)
"""
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


def tokenize_seq2seq(examples: list[dict], tokenizer, max_length: int) -> list[dict]:
    """{'prompt', 'response'} -> encoder input_ids and decoder labels (both end with EOS, as T5 tokenizes)."""
    return [{"input_ids": tokenizer(ex["prompt"], truncation=True, max_length=max_length)["input_ids"],
             "labels": tokenizer(ex["response"], truncation=True, max_length=max_length)["input_ids"]}
            for ex in examples]


def tokenize_cls(examples: list[dict], tokenizer, max_length: int) -> list[dict]:
    """{'text', 'text_pair'?, 'label'} -> encoder inputs and one label per example."""
    out = []
    for ex in examples:
        enc = tokenizer(ex["text"], ex.get("text_pair"), truncation=True, max_length=max_length)
        item = {"input_ids": enc["input_ids"], "labels": ex["label"]}
        if "token_type_ids" in enc:
            item["token_type_ids"] = enc["token_type_ids"]
        out.append(item)
    return out


def tokenize(examples: list[dict], tokenizer, max_length: int, model_kind: str) -> list[dict]:
    if examples and "label" in examples[0]:
        return tokenize_cls(examples, tokenizer, max_length)
    if model_kind == "seq2seq":
        return tokenize_seq2seq(examples, tokenizer, max_length)
    return tokenize_sft(examples, tokenizer, max_length)


def n_targets(batch: dict, seq2seq: bool = False) -> int:
    """What the loss of a batch averages over: supervised tokens (after the causal shift), or examples."""
    labels = batch["labels"]
    if labels.ndim == 1:
        return labels.numel()
    return int((labels[:, 0 if seq2seq else 1:] != IGNORE).sum())


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def collate(batch: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of tokenized samples into tensors (training never generates, so right is fine)."""
    out = {"input_ids": _pad([b["input_ids"] for b in batch], pad_id),
           "attention_mask": _pad([[1] * len(b["input_ids"]) for b in batch], 0)}
    if "token_type_ids" in batch[0]:
        out["token_type_ids"] = _pad([b["token_type_ids"] for b in batch], 0)
    labels = [b["labels"] for b in batch]
    if isinstance(labels[0], list):
        out["labels"] = _pad(labels, IGNORE)
    else:   # one class id per example, or a float score (regression, e.g. STS-B)
        out["labels"] = torch.tensor(labels, dtype=torch.float if isinstance(labels[0], float) else torch.long)
    return out


def by_length(samples: list[dict]) -> list[int]:
    """Indices of `samples` by input length: evaluation batches that pad little (results go back in order)."""
    return sorted(range(len(samples)), key=lambda i: len(samples[i]["input_ids"]))


def batches(samples: list[dict], batch_size: int, pad_id: int, order: list[int] | None = None):
    """Yield collated batches of `samples` in `order` (default: as given)."""
    order = list(range(len(samples))) if order is None else order
    for i in range(0, len(order), batch_size):
        yield collate([samples[j] for j in order[i:i + batch_size]], pad_id)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of one epoch: a pure function of (seed, epoch), so resume can replay it."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()
