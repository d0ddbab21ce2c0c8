"""The papers' own numbers, shown beside ours in the leaderboard (never mixed into our records).

Keyed by (experiment, adapter), or (experiment, task, adapter) where one experiment spans several tasks (GLUE):
an experiment config (configs/experiment/) fixes the paper's model, task, protocol and hyperparameters, so
only runs of that experiment are compared with that table.
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

# EVA's own rows carry their rho: adapter `eva` is rho=2, `eva_rho1` rho=1 (configs/adapter/eva*.yaml), and
# each paper number is keyed by the adapter of its rho, so it is only ever set beside a run of that rho.
# Table 8's EVA row is rho=1 (Table 11: rho=1 61.9 GSM8K / 13.1 MATH; rho=2 61.0 / 12.5; commonsense 83.4 both).
EVA_RHO = {"eva": 2.0, "eva_rho1": 1.0}

# EVA Table 8, GSM8K column (arXiv 2410.07170v5; Llama-2-7B, MetaMathQA, r=16); EVA rho=2 from Table 11.
for _a, _v in {"lora": 59.7, "pissa": 61.1, "milora": 59.7, "olora": 60.7, "lora_ga": 60.2, "corda": 59.0,
               "eva_rho1": 61.9, "eva": 61.0, "dora": 59.8}.items():
    PAPERS[("eva/llama2_gsm8k", _a)] = _v

# PiSSA Table 2, MATH column (arXiv 2404.02948v4; Llama-2-7B, MetaMathQA-100k, MetaMath's MATH scorer).
for _a, _v in {"full_ft": 7.29, "lora_gaussian": 5.50, "lora": 5.90, "pissa": 7.47}.items():
    PAPERS[("pissa/llama2_math", _a)] = _v

# EVA Table 8, MATH column (arXiv 2410.07170v5; Llama-2-7B, MetaMathQA, r=16, MetaMath's eval_math.py); EVA
# rho=2 from Table 11.
for _a, _v in {"lora": 10.9, "pissa": 12.6, "milora": 11.2, "olora": 11.8, "lora_ga": 11.7, "corda": 11.8,
               "eva_rho1": 13.1, "eva": 12.5, "dora": 11.5}.items():
    PAPERS[("eva/llama2_math", _a)] = _v

# PiSSA Table 2, HumanEval and MBPP columns (arXiv 2404.02948v4; Llama-2-7B, PiSSA's Python subset of
# CodeFeedback, evalplus pass@1).
for _a, _he, _mbpp in [("full_ft", 21.20, 35.59), ("lora_gaussian", 18.35, 35.50), ("lora", 18.21, 35.47),
                       ("pissa", 21.92, 37.24)]:
    PAPERS[("pissa/llama2_humaneval", _a)] = _he
    PAPERS[("pissa/llama2_mbpp", _a)] = _mbpp

# EVA Table 7, Llama-2-7B row: average over the eight commonsense tasks (arXiv 2410.07170v5; joint training on
# their own train splits, r=16). Per task (BoolQ/PIQA/SIQA/HellaSwag/WinoGrande/ARC-e/ARC-c/OBQA), from the same
# table: LoRA 67.2/83.9/82.0/94.7/84.0/87.8/74.1/84.0; EVA 68.3/85.3/82.9/95.2/85.2/88.6/75.8/86.3;
# LoRA-GA 69.0/85.6/82.3/95.0/85.0/88.7/75.9/85.8 (EVA_COMMONSENSE_PER_TASK). The average is 83.4 at rho=1 and
# rho=2 (Table 11); the per-task EVA row is the rho=2 run's (found by the check of issue 24), so only `eva`
# (rho=2) has per-task numbers.
for _a, _v in {"lora": 82.2, "pissa": 82.0, "milora": 82.5, "olora": 82.9, "lora_ga": 83.4, "corda": 78.4,
               "eva": 83.4, "eva_rho1": 83.4, "dora": 83.1}.items():
    PAPERS[("eva/llama2_commonsense", _a)] = _v
EVA_COMMONSENSE_PER_TASK = {   # (adapter) -> {metric key of task commonsense: value in %}
    _a: dict(zip(("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"), _row))
    for _a, _row in {"lora": (67.2, 83.9, 82.0, 94.7, 84.0, 87.8, 74.1, 84.0),
                     "eva": (68.3, 85.3, 82.9, 95.2, 85.2, 88.6, 75.8, 86.3),
                     "lora_ga": (69.0, 85.6, 82.3, 95.0, 85.0, 88.7, 75.9, 85.8)}.items()}

# GoRA, Llama-3.1-8B GSM8K column (r_ref=8) [2nd: third-party paper note, cross-checked with the abstract].
for _a, _v in {"full_ft": 73.69, "lora": 67.78, "lora_ga": 71.39, "gora": 72.91}.items():
    PAPERS[("gora/llama3_1_gsm8k", _a)] = _v

# LoRA-GA Table 2, HumanEval column (Llama-2-7B, CodeFeedback-100k, r=8) [2nd: LoRA-MGPO reprint].
for _a, _v in {"full_ft": 35.31, "lora": 14.76, "dora": 19.75, "pissa": 16.02, "rslora": 16.01,
               "lora_ga": 19.81}.items():
    PAPERS[("lora_ga/llama2_humaneval", _a)] = _v

# GoRA, Llama-3.1-8B HumanEval column and the r_ref=128 row [2nd: paper note].
for _a, _v in {"full_ft": 51.63, "lora": 43.09, "lora_ga": 43.29, "gora": 48.98}.items():
    PAPERS[("gora/llama3_1_humaneval", _a)] = _v
PAPERS[("gora/llama3_1_gsm8k_r128", "gora")] = 75.74


_GLUE = ("glue_mnli", "glue_sst2", "glue_cola", "glue_qnli", "glue_mrpc")

# LoRA-GA Table 1: T5-base, GLUE validation, first-token accuracy, r=8, mean of 3 seeds [2nd: LoRA-MGPO reprint].
for _a, _row in {"full_ft": (86.33, 94.75, 80.70, 93.19, 84.56), "lora": (85.30, 94.04, 69.35, 92.96, 68.38),
                 "dora": (85.67, 94.04, 72.04, 93.04, 68.08), "pissa": (85.75, 94.07, 74.27, 93.15, 76.31),
                 "rslora": (85.73, 94.19, 72.32, 93.12, 52.86), "lora_ga": (85.70, 94.11, 80.57, 93.18, 85.29)}.items():
    for _t, _v in zip(_GLUE, _row):
        PAPERS[("lora_ga/t5_glue", _t, _a)] = _v

# GoRA, T5-base GLUE rows (r_ref=8), same protocol and baselines as LoRA-GA Table 1 [2nd: paper note].
for _a, _row in {"full_ft": (86.33, 94.75, 80.70, 93.19, 84.56), "lora": (85.30, 94.04, 69.35, 92.96, 68.38),
                 "lora_ga": (85.70, 94.11, 80.57, 93.18, 85.29), "gora": (85.91, 94.68, 79.86, 93.27, 86.10)}.items():
    for _t, _v in zip(_GLUE, _row):
        PAPERS[("gora/t5_glue", _t, _a)] = _v

# PiSSA Table 3: DeBERTa-v3-base, GLUE dev, classification head (MCC CoLA, Pearson STS-B, accuracy otherwise;
# the MRPC and QQP columns are accuracy), r=8 (arXiv 2404.02948v4).
_GLUE8 = ("glue_mnli", "glue_sst2", "glue_mrpc", "glue_cola", "glue_qnli", "glue_qqp", "glue_rte", "glue_stsb")
for _a, _row in {"full_ft": (89.90, 95.63, 89.46, 69.19, 94.03, 92.40, 83.75, 91.60),
                 "lora_gaussian": (90.65, 94.95, 89.95, 69.82, 93.87, 91.99, 85.20, 91.60),
                 "lora": (89.96, 95.64, 90.28, 70.69, 93.84, 92.03, 84.84, 91.68),
                 "dora": (90.29, 95.79, 90.93, 70.85, 94.10, 92.07, 86.04, 91.79),
                 "pissa": (90.37, 96.22, 91.50, 73.12, 94.43, 92.33, 88.69, 92.00)}.items():
    for _t, _v in zip(_GLUE8, _row):   # one experiment per task: each runs its own row of App. L Table 10
        PAPERS[(f"pissa/deberta_{_t}", _t, _a)] = _v


# Where each experiment's numbers were read. Second-hand: a reprint in another paper or a third-party note, not
# checked against the paper's own PDF here; the leaderboard marks them.
SOURCES: dict[str, tuple[str, bool]] = {
    "lora_ga/llama2_gsm8k": ("LoRA-GA (arXiv 2407.05000) Table 2, reprinted in LoRA-MGPO", True),
    "lora_ga/t5_glue": ("LoRA-GA Table 1, reprinted in LoRA-MGPO", True),
    "pissa/llama2_gsm8k": ("PiSSA arXiv 2404.02948v4 Table 2", False),
    **{f"pissa/deberta_{_t}": ("PiSSA arXiv 2404.02948v4 Table 3", False) for _t in _GLUE8},
    "eva/llama2_gsm8k": ("EVA arXiv 2410.07170v5 Table 8", False),
    "pissa/llama2_math": ("PiSSA arXiv 2404.02948v4 Table 2", False),
    "eva/llama2_math": ("EVA arXiv 2410.07170v5 Table 8", False),
    "pissa/llama2_humaneval": ("PiSSA arXiv 2404.02948v4 Table 2", False),
    "pissa/llama2_mbpp": ("PiSSA arXiv 2404.02948v4 Table 2", False),
    "eva/llama2_commonsense": ("EVA arXiv 2410.07170v5 Table 7", False),
    "gora/llama3_1_gsm8k": ("GoRA (arXiv 2502.12171), Llama-3.1-8B table, from a paper note; abstract deltas agree",
                            True),
    "gora/t5_glue": ("GoRA T5-base GLUE rows, from a paper note", True),
    "lora_ga/llama2_humaneval": ("LoRA-GA Table 2, HumanEval column, reprinted in LoRA-MGPO", True),
    "gora/llama3_1_humaneval": ("GoRA, Llama-3.1-8B table, HumanEval column, from a paper note", True),
    "gora/llama3_1_gsm8k_r128": ("GoRA, Llama-3.1-8B table, r_ref=128 row; the abstract's +2.05 over full FT "
                                 "agrees", True),
}

# Paper columns with no experiment here, and why (the leaderboard lists them rather than leaving them out).
NOT_RUN = {
    "LoRA-GA Table 2, MT-Bench (WizardLM-52k)": "scored by a GPT-4 judge",
    "GoRA Llama-3.1-8B table, MT-Bench": "scored by a GPT-4 judge",
    "PiSSA Table 2, MT-Bench": "scored by a GPT-4 judge",
}


def paper_number(experiment: str | None, adapter: str, task: str | None = None) -> float | None:
    if not experiment:
        return None
    return PAPERS.get((experiment, task, adapter), PAPERS.get((experiment, adapter)))


# The scorer each paper number is set beside: the paper's own (`accuracy_official`, lorabench/eval/official.py)
# where a record carries it, else the protocol's primary metric. Exceptions: rows whose number another paper's
# scorer produced (GoRA's T5 table copies LoRA-GA Table 1's full-FT, LoRA and LoRA-GA rows: first-token scores).
PAPER_METRIC = {("gora/t5_glue", a): "accuracy" for a in ("full_ft", "lora", "lora_ga")}


def paper_metric(experiment: str | None, adapter: str, available) -> str | None:
    """The metric of a record (its names: `available`) to compare with the paper's number."""
    wanted = PAPER_METRIC.get((experiment, adapter), "accuracy_official")
    return wanted if wanted in available else None


def paper_cell(experiment: str | None, value: float | None) -> str:
    """The leaderboard's paper column: the number, with † where it was read second-hand."""
    if value is None:
        return "—"
    return f"{value:.2f}" + ("†" if SOURCES.get(experiment or "", ("", True))[1] else "")
