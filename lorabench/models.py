"""Base model + tokenizer: hub id, local path, packaged offline model, or a tiny random model for tests."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from lorabench import assets, quantize
from lorabench.errors import ConfigError
from lorabench.hub import require_hub

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OFFLINE_MODEL = "model=smollm2_135m (causal LM) or model=minilm_l6 (encoder)"

# Tiny random architectures for fast tests. They borrow a packaged tokenizer, so ids are real.
RANDOM_ARCHS = {
    "llama-tiny": ("smollm2-135m-instruct", dict(model_type="llama", hidden_size=64, intermediate_size=128,
                                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                  max_position_embeddings=1024, tie_word_embeddings=True)),
    "t5-tiny": ("smollm2-135m-instruct", dict(model_type="t5", d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                               num_decoder_layers=2, num_heads=4, decoder_start_token_id=0)),
    "bert-tiny": ("all-minilm-l6-v2", dict(model_type="bert", hidden_size=64, intermediate_size=128,
                                            num_hidden_layers=2, num_attention_heads=4)),
}


def _auto_class(kind: str):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    return {"causal_lm": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM,
            "seq_cls": AutoModelForSequenceClassification}[kind]


def resolve(model_cfg: DictConfig) -> tuple[str, str | None]:
    """(path or hub id for weights/config, packaged name of the tokenizer for random models)."""
    src = model_cfg.source
    if src.startswith("packaged:"):
        return str(assets.packaged_model_dir(src.split(":", 1)[1])), None
    if src.startswith("random:"):
        arch = src.split(":", 1)[1]
        if arch not in RANDOM_ARCHS:
            raise ConfigError(f"model.source={src!r}: unknown random architecture; known: {', '.join(RANDOM_ARCHS)}.")
        return src, RANDOM_ARCHS[arch][0]
    if os.path.isdir(os.path.expanduser(src)):
        return os.path.expanduser(src), None
    require_hub(f"model '{src}'", OFFLINE_MODEL)
    return src, None


def load_config(model_cfg: DictConfig, num_labels: int | None = None):
    from transformers import AutoConfig

    src, _ = resolve(model_cfg)
    extra = {"num_labels": num_labels} if (num_labels and model_cfg.kind == "seq_cls") else {}
    if src.startswith("random:"):
        spec = dict(RANDOM_ARCHS[src.split(":", 1)[1]][1])
        tok = load_tokenizer(model_cfg)
        spec.setdefault("vocab_size", len(tok))
        return AutoConfig.for_model(**spec, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **extra)
    return AutoConfig.from_pretrained(src, revision=model_cfg.revision,
                                      trust_remote_code=model_cfg.trust_remote_code, **extra)


def meta_model(model_cfg: DictConfig, num_labels: int | None = None) -> nn.Module:
    """The architecture without weights (meta device): shapes for config checks, instantly."""
    config = load_config(model_cfg, num_labels)
    with torch.device("meta"):
        return _auto_class(model_cfg.kind).from_config(config, trust_remote_code=model_cfg.trust_remote_code)


def load_tokenizer(model_cfg: DictConfig):
    from transformers import AutoTokenizer

    src, packaged_tok = resolve(model_cfg)
    path = str(assets.packaged_model_dir(packaged_tok)) if packaged_tok else src
    tok = AutoTokenizer.from_pretrained(path, revision=None if packaged_tok else model_cfg.revision,
                                        trust_remote_code=model_cfg.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # Decoder-only models generate in batches with left padding; training pads on the right itself.
    tok.padding_side = "left" if model_cfg.kind == "causal_lm" else "right"
    return tok


def quantization_config(quant_cfg: DictConfig):
    if not quant_cfg.load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_cfg.quant_type,
                              bnb_4bit_use_double_quant=quant_cfg.double_quant,
                              bnb_4bit_compute_dtype=getattr(torch, quant_cfg.compute_dtype))


def load_model(model_cfg: DictConfig, quant_cfg: DictConfig | None = None, num_labels: int | None = None) -> nn.Module:
    src, _ = resolve(model_cfg)
    dtype = DTYPES[model_cfg.dtype]
    cls = _auto_class(model_cfg.kind)
    in_4bit = quant_cfg is not None and quant_cfg.load_in_4bit
    if src.startswith("random:"):
        # Same weights for the same config whatever the run seed: seeded from a constant.
        with torch.random.fork_rng():
            torch.manual_seed(1234)
            model = cls.from_config(load_config(model_cfg, num_labels)).to(dtype)
        if in_4bit:   # quantized in place, the same layers and packing as transformers' 4-bit loading
            quantize.quantize_base(model, quant_cfg)
    else:
        kwargs = {"num_labels": num_labels} if (num_labels and model_cfg.kind == "seq_cls") else {}
        qc = quantization_config(quant_cfg) if quant_cfg is not None else None
        if qc is not None:
            kwargs["quantization_config"] = qc
        model = cls.from_pretrained(src, dtype=dtype, revision=model_cfg.revision,
                                    trust_remote_code=model_cfg.trust_remote_code, **kwargs)
    if model_cfg.source.startswith("packaged:"):
        # peft records `model.name_or_path` as a saved adapter's base_model_name_or_path: the hub id, not the
        # cache folder the weights were read from, so the adapter loads on any machine with the hub model.
        model.name_or_path = assets.hub_id(model_cfg.source.split(":", 1)[1])
    if model_cfg.kind == "seq_cls" and model.config.pad_token_id is None:
        model.config.pad_token_id = load_tokenizer(model_cfg).pad_token_id
    return quantize.prepare(model) if in_4bit else model


def target_linear_layers(model: nn.Module, targets: list[str]) -> dict[str, tuple[int, int]]:
    """{module name: (in_features, out_features)} for the linear layers an adapter would wrap.

    Matching follows peft: a name matches a target if it equals it or ends with '.<target>';
    'all-linear' means every linear layer except the output head(s).
    """
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    heads = {id(out_emb)} if out_emb is not None else set()
    for attr in ("classifier", "score"):
        head = getattr(model, attr, None)
        for m in (head.modules() if isinstance(head, nn.Module) else []):
            heads.add(id(m))
    found = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or id(mod) in heads:
            continue
        if "all-linear" in targets or any(name == t or name.endswith("." + t) for t in targets):
            found[name] = (mod.in_features, mod.out_features)
    return found


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total); a 4-bit weight counts its unpacked size (two values a byte, as transformers)."""
    def n(p):
        return p.numel() * 2 * p.element_size() if p.__class__.__name__ == "Params4bit" else p.numel()
    trainable = sum(n(p) for p in model.parameters() if p.requires_grad)
    total = sum(n(p) for p in model.parameters())
    return trainable, total


def snapshot_source(model_cfg: DictConfig) -> str | None:
    """What identifies the weights: the commit for hub models, the folder for local ones."""
    src = model_cfg.source
    if src.startswith(("packaged:", "random:")):
        return src
    return model_cfg.revision or str(Path(src))
