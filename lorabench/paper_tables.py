"""The papers' own numbers, shown beside ours in the leaderboard (never mixed into our records).

Keyed by (experiment, adapter): an experiment config (configs/experiment/) fixes the paper's model, task,
protocol and hyperparameters, so only runs of that experiment are compared with that table.
Values in %, from the tables quoted in shared/reference/ALGORITHMS.md (source and version per block).
"""
from __future__ import annotations

PAPERS: dict[tuple[str, str], float] = {}

# LoRA-GA Table 2, GSM8K column (Llama-2-7B, MetaMathQA-100k, r=8), reprinted in LoRA-MGPO [2nd].
for _a, _v in {"full_ft": 59.36, "lora": 42.08, "dora": 53.07, "pissa": 44.54, "rslora": 45.62, "lora_ga": 53.60}.items():
    PAPERS[("lora_ga/llama2_gsm8k", _a)] = _v

# PiSSA Table 2, GSM8K column (arXiv 2404.02948v4; Llama-2-7B, MetaMathQA-100k, Alpaca prompt).
for _a, _v in {"full_ft": 49.13, "lora_gaussian": 42.85, "lora": 43.23, "pissa": 53.22}.items():
    PAPERS[("pissa/llama2_gsm8k", _a)] = _v

# EVA Table 8, GSM8K column (arXiv 2410.07170v5; Llama-2-7B, MetaMathQA, r=16).
for _a, _v in {"lora": 59.7, "pissa": 61.1, "milora": 59.7, "olora": 60.7, "lora_ga": 60.2, "corda": 59.0,
               "eva": 61.9, "dora": 59.8}.items():
    PAPERS[("eva/llama2_gsm8k", _a)] = _v

# GoRA, Llama-3.1-8B GSM8K column (r_ref=8) [2nd: third-party paper note, cross-checked with the abstract].
for _a, _v in {"full_ft": 73.69, "lora": 67.78, "lora_ga": 71.39, "gora": 72.91}.items():
    PAPERS[("gora/llama3_1_gsm8k", _a)] = _v


def paper_number(experiment: str | None, adapter: str) -> float | None:
    return PAPERS.get((experiment, adapter)) if experiment else None
