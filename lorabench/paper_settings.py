"""The papers' settings, one table per paper experiment (configs/experiment/<paper>/<table>.yaml).

`SETTINGS[experiment][dotted key] = (value, source)`: the value the paper or its official script fixes, read
from shared/reference/ALGORITHMS.md (marks there: [paper], [code], [2nd]), and where it was read. A source that
says UNVERIFIED names a value of ours that no reference fixes: pinned so that it cannot change silently, not
claimed as the paper's. tests/test_paper_settings.py composes every experiment, with every method that its paper
table compares (lorabench/report/paper_tables.PAPERS), and checks the resolved config against this table: a trainer or
task default can never again override a paper value unnoticed.

Shared keys hold for every method of the table; keys in `method_only` are the experiment's own method's (the
init options and gradient samples of the other methods are theirs), and adapter keys do not apply to full
fine-tuning (no LoRA matrices).
"""
from __future__ import annotations

from typing import Any

Setting = tuple[Any, str]

# Keys that belong to one init method, not to the table: checked for the experiment's own adapter only.
METHOD_KEYS = ("adapter.name", "adapter.use_rslora", "adapter.init_batches", "adapter.init_batch_size", "adapter.options.")
# Per experiment, further keys that hold for its own method only.
EXTRA_METHOD_KEYS: dict[str, tuple[str, ...]] = {   # LoRA+ for GoRA only (its scripts); the baselines as their papers
    e: ("trainer.loraplus_lr_ratio",) for e in ("gora/t5_glue", "gora/llama3_1_gsm8k", "gora/llama3_1_gsm8k_r128",
                                                 "gora/llama3_1_humaneval")
}
# Keys that do not apply to a method without LoRA matrices (full_ft).
ADAPTER_KEYS = ("adapter.", "trainer.loraplus_lr_ratio")


def method_only(experiment: str, key: str) -> bool:
    per_method = {k for table in PER_METHOD.get(experiment, {}).values() for k in table}
    return key.startswith(METHOD_KEYS) or key in EXTRA_METHOD_KEYS.get(experiment, ()) or key in per_method


_LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_MODEL_TARGETS = "the model's targets for LoRA methods; null so that full_ft trains every parameter"

# ---- LoRA-GA (arXiv 2407.05000; code Outsider565/LoRA-GA @89af7de reproduce/) -------------------------------
_LGA = "Outsider565/LoRA-GA@89af7de reproduce/"
_LGA_INIT = _LGA + "conf/init/gradient.yaml"
_LGA_COMMON: dict[str, Setting] = {
    "adapter.r": (8, "LoRA-GA Tables 1-2: r=8 [2nd: LoRA-MGPO reprint]; " + _LGA + "++peft.lora_r=8"),
    "adapter.alpha": (16, _LGA + "conf/peft/all.yaml lora_alpha 16"),
    "adapter.use_rslora": (True, _LGA + "Readme: LoRA-GA = init=gradient, init.weight=stable, peft.use_rslora=True"),
    "adapter.init_batches": (8, _LGA_INIT + ": iters 8"),
    "adapter.init_batch_size": (1, _LGA_INIT + ": bsz 1"),
    "adapter.options.direction": ("ArB2r", _LGA_INIT + ": direction ArB2r"),
    "adapter.options.scale": ("stable", _LGA_INIT + ": scale stable"),
    "adapter.options.stable_gamma": (16, _LGA_INIT + ": stable_gamma 16"),
    "trainer.epochs": (1, "LoRA-GA conf/model/{llama,t5base}.yaml: 1 epoch"),
    "trainer.max_steps": (None, "paper runs train whole epochs"),
    "trainer.schedule": ("cosine", "LoRA-GA reproduce (ALGORITHMS.md §2.5): cosine"),
    "trainer.warmup_ratio": (0.03, "LoRA-GA reproduce (ALGORITHMS.md §2.5): warmup 0.03"),
    "trainer.weight_decay": (0.0, "LoRA-GA reproduce (ALGORITHMS.md §2.5): AdamW wd 0"),
    "trainer.global_batch": (32, "LoRA-GA conf/model/{llama,t5base}.yaml: real batch 32"),
    "adapter.dropout": (0.0, _LGA + "run_exp.py LoraConfig(r, lora_alpha, target_modules, use_rslora): no "
                        "lora_dropout, peft's default 0"),
    "trainer.loraplus_lr_ratio": (None, _LGA + "conf/peft/all.yaml use_loraplus: false (every method of Tables 1-2)"),
}
_LGA_LLAMA: dict[str, Setting] = {
    **_LGA_COMMON,
    "model.source": ("meta-llama/Llama-2-7b-hf", "LoRA-GA Table 2: Llama-2-7B"),
    "model.dtype": ("bfloat16", _LGA + "conf/model/llama.yaml: bf16"),
    "trainer.precision": ("bf16", _LGA + "conf/model/llama.yaml: bf16"),
    "model.target_modules": (_LLAMA_LINEAR, _LGA + "conf/peft/all.yaml + run_exp.py: every linear layer but lm_head"),
    "adapter.target_modules": (None, _MODEL_TARGETS + " (LoRA-GA's full FT: run_exp.py use_peft=False)"),
    "trainer.lr": (2e-5, "LoRA-GA paper and issue Outsider565/LoRA-GA#12 (chosen; llama.yaml: 1e-5)"),
}
_LGA_T5: dict[str, Setting] = {
    **_LGA_COMMON,
    "model.source": ("google-t5/t5-base", "LoRA-GA Table 1: T5-base"),
    "model.dtype": ("float32", _LGA + "conf/model/t5base.yaml: fp32"),
    "trainer.precision": ("fp32", _LGA + "conf/model/t5base.yaml: fp32"),
    "model.target_modules": (["all-linear"], _LGA + "conf/peft/all.yaml + run_exp.py: every linear layer but lm_head"),
    "adapter.target_modules": (None, _MODEL_TARGETS + " (LoRA-GA's full FT: run_exp.py use_peft=False)"),
    "trainer.lr": (1e-4, _LGA + "conf/model/t5base.yaml: lr 1e-4"),
    "task.family": ("glue", "LoRA-GA Table 1: GLUE"),
    "task.protocol": ("t5_first_token", _LGA + "utils.py compute_metrics: first-token logit accuracy"),
    "task.max_length": (128, _LGA + "conf/model/t5base.yaml: max_length 128"),
    "task.train_size": (None, _LGA + "data.py: the whole GLUE train split"),
}

SETTINGS: dict[str, dict[str, Setting]] = {
    "lora_ga/llama2_gsm8k": {
        **_LGA_LLAMA,
        "task.family": ("gsm8k", "LoRA-GA Table 2: MetaMathQA -> GSM8K"),
        "task.protocol": ("lora_ga", _LGA + "data.py / eval_gsm8k.py: 'Q: ... A: ' prompt, '####' answer"),
        "task.train_size": (100000, _LGA + "data.py: first 100k GSM-type MetaMathQA samples"),
        "task.max_length": (512, _LGA + "data.py: samples < 512 tokens"),
        "task.max_new_tokens": (512, _LGA + "eval_gsm8k.py: max_target_length=512"),
        "task.options.temperature": (0.8, _LGA + "utils.py model_inference: temperature 0.8 (samples)"),
        "task.options.top_p": (0.95, _LGA + "utils.py model_inference: top_p 0.95"),
    },
    "lora_ga/llama2_humaneval": {
        **_LGA_LLAMA,
        "task.family": ("code", "LoRA-GA Table 2: CodeFeedback -> HumanEval"),
        "task.subset": ("humaneval", "LoRA-GA Table 2: HumanEval"),
        "task.protocol": ("instruct", _LGA + "eval_humaneval.py: Alpaca prompt, response opened with ```python"),
        "task.train_size": (100000, _LGA + "data.py: first 100k CodeFeedback samples with a code block"),
        "task.max_length": (1024, _LGA + "data.py: samples < 1024 tokens; conf/model/llama.yaml max_length 1024"),
        "task.max_new_tokens": (512, _LGA + "eval_humaneval.py: max_target_length=512"),
        "task.options.n_samples": (5, _LGA + "eval_humaneval.py: num_samples_per_task 5"),
        "task.options.temperature": (0.8, _LGA + "utils.py model_inference: temperature 0.8 (samples)"),
        "task.options.top_p": (0.95, _LGA + "utils.py model_inference: top_p 0.95"),
        "task.options.ks": ([1], "LoRA-GA Table 2: pass@1"),
    },
    "lora_ga/t5_glue": dict(_LGA_T5),
}

# ---- PiSSA (arXiv 2404.02948v4; code GraphPKU/PiSSA @87f4db6) ----------------------------------------------
_PS = "GraphPKU/PiSSA@87f4db6 scripts/metamath_llama2_7b/run_pissa.sh"
SETTINGS["pissa/llama2_gsm8k"] = {
    "model.source": ("meta-llama/Llama-2-7b-hf", "PiSSA Table 2: LLaMA-2-7B; " + _PS),
    "model.dtype": ("bfloat16", _PS + " --bf16 (chosen; paper §5: fp32 for LoRA/PiSSA)"),
    "trainer.precision": ("bf16", _PS + " --bf16 (chosen; paper §5: fp32 for LoRA/PiSSA)"),
    "adapter.r": (128, _PS + " --lora_r 128 (Table 2's rank: UNVERIFIED in the paper text)"),
    "adapter.alpha": (128, "PiSSA paper §5: lora_alpha = r; " + _PS + " --lora_alpha 128"),
    "adapter.dropout": (0.0, "PiSSA paper §5: dropout 0; " + _PS + " --lora_dropout 0"),
    "model.target_modules": (_LLAMA_LINEAR, _PS + " --target_modules (paper §5: all linear layers)"),
    "adapter.target_modules": (None, _MODEL_TARGETS + " (scripts/metamath_llama2_7b/run_full_finetune.sh)"),
    "adapter.options.niter": (None, "PiSSA paper (full SVD; App. B: niter>=4 ~ full); scripts: pissa_niter_16"),
    "trainer.lr": (2e-5, "PiSSA paper §5; " + _PS + " --learning_rate 2e-5"),
    "trainer.global_batch": (128, "PiSSA paper §5; " + _PS + " 4 x accum 4 x 8 GPUs"),
    "trainer.epochs": (1, "PiSSA paper §5; " + _PS + " --num_train_epochs 1"),
    "trainer.max_steps": (None, "paper runs train whole epochs"),
    "trainer.schedule": ("cosine", "PiSSA paper §5; " + _PS + " --lr_scheduler_type cosine"),
    "trainer.warmup_ratio": (0.03, "PiSSA paper §5; " + _PS + " --warmup_ratio 0.03"),
    "trainer.weight_decay": (0.0, "PiSSA paper §5; " + _PS + " --weight_decay 0."),
    "task.family": ("gsm8k", "PiSSA Table 2: MetaMathQA -> GSM8K"),
    "task.protocol": ("metamath", "PiSSA paper §5 / utils/test_acc.py: Alpaca prompt, 'The answer is:'"),
    "task.train_size": (100000, _PS + " --sub_task metamath:100000 (ours: the first 100k, not its sample)"),
    "task.max_length": (512, _PS + " --model_max_length 512"),
    "task.max_new_tokens": (1024, "GraphPKU/PiSSA@87f4db6 utils/gen_vllm.py: max_tokens default 1024"),
    "task.options": ({}, "greedy: utils/gen_vllm.py (temperature 0, top_p 1)"),
}
_PS_CODE = "GraphPKU/PiSSA@87f4db6 scripts/python_llama2_7b/run_pissa.sh"
SETTINGS["pissa/llama2_humaneval"] = {
    **{k: v for k, v in SETTINGS["pissa/llama2_gsm8k"].items() if not k.startswith("task.")},
    "adapter.r": (128, _PS_CODE + " --lora_r 128 (Table 2's rank: UNVERIFIED in the paper text)"),
    "task.family": ("code", "PiSSA Table 2: CodeFeedback (Python subset) -> HumanEval"),
    "task.subset": ("humaneval", "PiSSA Table 2: HumanEval column"),
    "task.protocol": ("pissa", "utils/code_process.py cuts; the prompt is LoRA-GA's instruction (UNVERIFIED)"),
    "task.train_size": (None, _PS_CODE + " --sub_task python: the whole subset"),
    "task.valid_size": (0, "PiSSA train.py: no validation split"),
    "task.max_length": (512, _PS_CODE + " --model_max_length 512"),
    "task.max_new_tokens": (1024, "utils/gen_vllm.py: max_tokens default 1024"),
    "task.options.train_data": ("pissa_python", _PS_CODE + " --data_path pissa-dataset --sub_task python"),
    "task.options.n_samples": (1, "utils/gen_vllm.py: one completion per prompt"),
    "task.options.temperature": (0.0, "utils/gen_vllm.py: temperature default 0 (greedy)"),
    "task.options.top_p": (1.0, "utils/gen_vllm.py: top_p default 1"),
    "task.options.ks": ([1], "PiSSA Table 2: evalplus pass@1"),
}
SETTINGS["pissa/llama2_math"] = {
    **SETTINGS["pissa/llama2_gsm8k"],
    "task.family": ("math", "PiSSA Table 2: MetaMathQA -> MATH"),
    "task.protocol": ("metamath", "PiSSA inference/acc_math.py @86d7944 (MetaMath's is_equiv on 'The answer is: ')"),
    "task.max_new_tokens": (1024, "PiSSA inference/gen_vllm.py @86d7944: max_tokens default 1024"),
}
SETTINGS["pissa/llama2_mbpp"] = {
    **SETTINGS["pissa/llama2_humaneval"],
    "task.subset": ("mbpp", "PiSSA Table 2: MBPP column (the HumanEval column's model; evalplus MBPP+ problem "
                            "set: ours is the 500-problem test split)"),
}
# PiSSA's GLUE (Table 3, App. L): one experiment per task, each method at its own row of App. L Table 10.
_PG = "PiSSA arXiv 2404.02948v4 App. L"
_PISSA_GLUE: dict[str, Setting] = {
    "model.source": ("microsoft/deberta-v3-base", "PiSSA Table 3: DeBERTa-v3-base"),
    "adapter.r": (8, _PG + ": rank 8"),
    "model.target_modules": (["query_proj", "key_proj", "value_proj"],
                             _PG + ": W_Q, W_K, W_V (its '1.33M parameters' is AdaLoRA's all-linear count)"),
    "adapter.target_modules": (None, _MODEL_TARGETS + " (the full FT row is AdaLoRA's)"),
    "task.family": ("glue", "PiSSA Table 3: GLUE"),
    "task.protocol": ("classification", "PiSSA Table 3: classification head, MCC CoLA, Pearson STS-B"),
    "task.train_size": (None, "PiSSA Table 3: GLUE train, scored on dev"),
    "task.max_length": (256, "UNVERIFIED: ours (App. L gives none)"),
    "trainer.max_steps": (None, "paper runs train whole epochs"),
    "trainer.schedule": ("linear", _PG + ": AdamW with a linear schedule"),
    "trainer.warmup_ratio": (0.06, "UNVERIFIED: ours (AdaLoRA-style; App. L gives none)"),
    "trainer.weight_decay": (0.0, "UNVERIFIED: ours"),
    "adapter.dropout": (0.0, "UNVERIFIED: ours (App. L gives none)"),
    "trainer.precision": ("fp32", "UNVERIFIED: ours"),
}
# App. L Table 10 "Hyperparameters of PiSSA, DoRA and LoRA with Kaiming Initialization on GLUE": per task and
# method (epochs, batch, rate, alpha). The rows Table 3 copies from AdaLoRA (full FT, LoRA Gaussian) run at LoRA's.
_TABLE10 = {
    "mnli": {"pissa": (5, 16, 5e-4, 8), "dora": (10, 32, 2e-4, 16), "lora": (10, 32, 3e-4, 8)},
    "sst2": {"pissa": (20, 16, 3e-5, 8), "dora": (10, 16, 4e-4, 16), "lora": (10, 32, 1e-4, 8)},
    "mrpc": {"pissa": (20, 32, 2e-4, 8), "dora": (10, 32, 4e-4, 16), "lora": (10, 32, 4e-4, 8)},
    "cola": {"pissa": (20, 16, 1e-4, 8), "dora": (20, 8, 1e-4, 6), "lora": (30, 32, 4e-4, 8)},
    "qnli": {"pissa": (10, 32, 1e-4, 16), "dora": (10, 16, 2e-4, 16), "lora": (25, 32, 3e-4, 8)},
    "qqp": {"pissa": (10, 16, 1e-4, 8), "dora": (10, 16, 1e-4, 6), "lora": (10, 16, 3e-4, 8)},
    "rte": {"pissa": (50, 16, 1e-4, 8), "dora": (50, 8, 2e-4, 6), "lora": (50, 32, 4e-4, 8)},
    "stsb": {"pissa": (20, 8, 3e-4, 8), "dora": (20, 16, 3e-4, 6), "lora": (30, 16, 4e-4, 8)},
}
# Settings that differ by method within one table: PER_METHOD[experiment][adapter][key] = (value, source).
PER_METHOD: dict[str, dict[str, dict[str, Setting]]] = {}
for _task, _rows in _TABLE10.items():
    _e = f"pissa/deberta_glue_{_task}"
    PER_METHOD[_e] = {}
    for _m in ("pissa", "dora", "lora", "lora_gaussian", "full_ft"):
        _ep, _bs, _lr, _alpha = _rows.get(_m, _rows["lora"])
        _src = f"{_PG} Table 10, {_task}, " + (f"{_m} row" if _m in _rows else f"LoRA (Kaiming) row ({_m}'s is AdaLoRA's)")
        PER_METHOD[_e][_m] = {"trainer.epochs": (_ep, _src), "trainer.global_batch": (_bs, _src),
                              "trainer.lr": (_lr, _src), **({"adapter.alpha": (_alpha, _src)} if _m != "full_ft" else {})}
    SETTINGS[_e] = {**_PISSA_GLUE, **PER_METHOD[_e]["pissa"]}   # the experiment's own method: PiSSA

# ---- EVA (arXiv 2410.07170v5; code ml-jku/EVA @e047fe4) ----------------------------------------------------
_EV = "EVA paper Table 4"
_EVB = "ml-jku/EVA@e047fe4 bash/_run_train_eva_rho1.sh"
SETTINGS["eva/llama2_gsm8k"] = {
    "model.source": ("meta-llama/Llama-2-7b-hf", "EVA Table 8: Llama-2-7B"),
    "model.dtype": ("bfloat16", _EVB + " --bf16 True"),
    "trainer.precision": ("bf16", _EVB + " --bf16 True"),
    "adapter.r": (16, _EV + ": r=16 (all methods)"),
    "adapter.alpha": (1, _EV + ": alpha=1 (all methods); train.py lora_alpha=1"),
    "adapter.dropout": (0.0, _EV + ": dropout 0"),
    "adapter.target_modules": (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                "lm_head"], "EVA paper App. B.2: all linear layers incl. lm_head; train.py"),
    "adapter.init_batch_size": (16, _EV + ": SVD batch size 16"),
    "adapter.name": ("eva_rho1", "EVA Table 11: the Table 8 EVA row (61.9) is rho=1; named for its rho"),
    "adapter.options.rho": (1.0, "EVA Table 11: the Table 8 EVA row (61.9) is rho=1"),
    "adapter.options.tau": (0.99, _EV + ": tau 0.99"),
    "adapter.options.use_label_mask": (False, "EVA paper App. F.5 / official src/svd.py: prompt tokens kept"),
    "trainer.lr": (5e-4, _EV + ": lr 5e-4"),
    "trainer.global_batch": (32, _EV + ": batch 32"),
    "trainer.epochs": (1, _EV + ": 1 epoch"),
    "trainer.max_steps": (None, "paper runs train whole epochs"),
    "trainer.schedule": ("linear", _EV + ": linear (chosen; " + _EVB + ": cosine)"),
    "trainer.warmup_ratio": (0.03, _EV + ": warmup 0.03; " + _EVB),
    "trainer.weight_decay": (0.0, _EV + ": wd 0; " + _EVB),
    "task.family": ("gsm8k", "EVA Table 8: MetaMathQA -> GSM8K"),
    "task.protocol": ("metamath", "EVA: MetaMath eval_gsm8k.py, Alpaca prompt, 'The answer is:'"),
    "task.train_size": (395000, "EVA code reads all of MetaMathQA (395k)"),
    "task.max_length": (512, "EVA paper (ALGORITHMS.md §3.3): MetaMathQA max length 512, no filtering"),
    "task.max_new_tokens": (512, "UNVERIFIED: eval_gsm8k.py max_tokens not in our reference"),
    "task.options": ({}, "greedy: MetaMath eval_gsm8k.py (vLLM)"),
}

_EVC = "ml-jku/EVA@a5ac24b "
SETTINGS["eva/llama2_commonsense"] = {
    **{k: v for k, v in SETTINGS["eva/llama2_gsm8k"].items() if not k.startswith("task.")},
    "model.source": ("meta-llama/Llama-2-7b-hf", "EVA Table 7: Llama-2-7B; " + _EVC + "bash/run_train.sh"),
    "adapter.options.rho": (1.0, "EVA Table 11: commonsense rho=1 83.4 = rho=2 83.4"),
    "task.family": ("commonsense", "EVA Table 7: eight commonsense tasks, joint training"),
    "task.protocol": ("eva", _EVC + "bash/lm_eval_harness.sh custom_* tasks: EVA's prompts, acc"),
    "task.train_size": (None, _EVC + "src/prepare_data.py: every row of the eight train splits"),
    "task.valid_size": (0, _EVC + "train.py: the whole train split"),
    "task.eval_size": (None, "lm-eval scores whole splits"),
    "task.max_length": (1024, "EVA paper §3.3; " + _EVC + "bash/run_train.sh qa_datasets 1024, filtered"),
    "task.options.train_data": ("qa_datasets", _EVC + "bash/run_train.sh dataset=qa_datasets"),
}

SETTINGS["eva/llama2_math"] = {
    **SETTINGS["eva/llama2_gsm8k"],
    "task.family": ("math", "EVA Table 8: MetaMathQA -> MATH"),
    "task.protocol": ("metamath", "EVA README bash/run_eval_math.sh -> eval_math.py @e047fe4 (MetaMath's)"),
    "task.max_new_tokens": (2048, "EVA eval_math.py @e047fe4: SamplingParams(max_tokens=2048)"),
}

# ---- GoRA (arXiv 2502.12171; code hhnqqq/MyTransformers scripts/gora/) -------------------------------------
_GS = "hhnqqq/MyTransformers scripts/gora/llama3.1_metamathqa.sh"
_GORA_ADAPTER: dict[str, Setting] = {
    "adapter.use_rslora": (True, _GS + " --gora-rank-stablize --gora-dynamic-scaling (alpha/sqrt(r_i))"),
    "adapter.options.min_rank": (4, _GS + " --gora-min-rank 4"),
    "adapter.options.max_rank": (32, _GS + " --gora-max-rank 32"),
    "adapter.options.lr": (0.05, _GS + " --gora-lr 5e-2"),
    "adapter.options.scale_by_lr": (True, _GS + " --gora-scale-by-lr"),
    "adapter.options.dynamic_scaling": (True, _GS + " --gora-dynamic-scaling"),
    "adapter.options.importance": ("union_mean", _GS + " --gora-importance-type union_mean"),
    "adapter.options.sign": ("descent", "GoRA paper (B0 = -(A0^T A0)^-1 A0^T G) [2nd]; HEAD code: +B"),
}
_GORA_LLAMA: dict[str, Setting] = {
    **_GORA_ADAPTER,
    "model.source": ("meta-llama/Llama-3.1-8B", "GoRA Llama-3.1-8B table (base model); " + _GS),
    "model.dtype": ("bfloat16", _GS + " --bf16"),
    "trainer.precision": ("bf16", _GS + " --bf16"),
    "adapter.r": (8, _GS + " --lora-rank 8 (r_ref)"),
    "adapter.alpha": (16, _GS + " --lora-scaler 16"),
    "adapter.target_modules": (["q_proj", "k_proj", "v_proj", "o_proj"], _GS + " --replace-modules wq wk wv wo; "
                               "full FT too: fft_metamathqa.sh --enable-list wq wk wv wo"),
    "adapter.init_batches": (256, _GS + " --gora-n-steps 32 x 8 GPUs (all-reduced; inferred, UNVERIFIED)"),
    "adapter.init_batch_size": (4, _GS + " --batch-size-per-gpu 4"),
    "trainer.lr": (5e-5, _GS + " --lr 5e-5"),
    "trainer.weight_decay": (5e-4, _GS + " --weight-decay 5e-4"),
    "trainer.global_batch": (64, _GS + " 4 per GPU x accum 2 x 8 GPUs"),
    "trainer.epochs": (1, _GS + " --epochs 1"),
    "trainer.max_steps": (None, "paper runs train whole epochs"),
    "trainer.schedule": ("cosine", _GS + " --lr-decay-style cosine"),
    "trainer.min_lr_ratio": (0.1, _GS + " --lr-decay-ratio 0.1"),
    "trainer.warmup_ratio": (0.03, _GS + " --warmup 0.03"),
    "trainer.loraplus_lr_ratio": (16, _GS + " --use-lora-plus --lora-plus-scaler 16 (GoRA's own script only: the "
                                  "baselines run without, as their papers; see BASELINES)"),
    "adapter.dropout": (0.0, _GS + " sets no --lora-dropout (common/parser.py @4037d4d: default None, no dropout)"),
}
SETTINGS["gora/llama3_1_gsm8k"] = {
    **_GORA_LLAMA,
    "task.family": ("gsm8k", "GoRA Llama-3.1-8B table: MetaMathQA -> GSM8K; " + _GS),
    "task.protocol": ("lora_ga", "UNVERIFIED: GoRA's prompt not in our reference (LoRA-GA's)"),
    "task.train_size": (100000, "UNVERIFIED: MyTransformers' metamathqa subset not in our reference"),
    "task.max_length": (1024, _GS + " --max-len 1024"),
    "task.max_new_tokens": (512, "UNVERIFIED (LoRA-GA's eval_gsm8k.py)"),
    "task.options": ({}, "UNVERIFIED: greedy (GoRA's decoding not in our reference)"),
}
SETTINGS["gora/llama3_1_gsm8k_r128"] = {
    **SETTINGS["gora/llama3_1_gsm8k"],
    "adapter.r": (128, "GoRA Llama-3.1-8B table, r_ref=128 row [2nd]; abstract: +2.05 over full FT"),
    "adapter.options.min_rank": (64, "UNVERIFIED: ours (r/2, as the r_ref=8 row's 4)"),
    "adapter.options.max_rank": (512, "UNVERIFIED: ours (4r, as the r_ref=8 row's 32)"),
}
SETTINGS["gora/llama3_1_humaneval"] = {
    **_GORA_LLAMA,
    "task.family": ("code", "GoRA Llama-3.1-8B table: CodeFeedback -> HumanEval; scripts/gora/llama3.1_codefeedback.sh"),
    "task.subset": ("humaneval", "GoRA Llama-3.1-8B table: HumanEval"),
    "task.protocol": ("instruct", "UNVERIFIED: GoRA's code prompt not in our reference (LoRA-GA's)"),
    "task.train_size": (100000, "UNVERIFIED: MyTransformers' code_feedback subset not in our reference"),
    "task.max_length": (1024, "scripts/gora/llama3.1_codefeedback.sh --max-len 1024"),
    "task.max_new_tokens": (512, "UNVERIFIED (LoRA-GA's eval_humaneval.py)"),
    "task.options.n_samples": (5, "UNVERIFIED: GoRA's decoding not in our reference (LoRA-GA's)"),
    "task.options.temperature": (0.8, "UNVERIFIED: GoRA's decoding not in our reference (LoRA-GA's)"),
    "task.options.top_p": (0.95, "UNVERIFIED: GoRA's decoding not in our reference (LoRA-GA's)"),
}
_GT5 = "hhnqqq/MyTransformers scripts/gora/t5_train.py"
SETTINGS["gora/t5_glue"] = {
    **{k: v for k, v in _LGA_T5.items() if not k.startswith(METHOD_KEYS)},   # the table's rows are LoRA-GA's
    **{k: (v, s + " (the Llama scripts'; t5_train.py's own: UNVERIFIED)") for k, (v, s) in _GORA_ADAPTER.items()},
    "adapter.r": (8, "GoRA T5-base GLUE rows: r_ref=8 [2nd]; " + _GT5),
    "adapter.init_batches": (64, _GT5 + ": 64 gradient batches"),
    "adapter.init_batch_size": (32, _GT5 + ": batches of 32"),
    "trainer.loraplus_lr_ratio": (16, _GT5 + ": B's lr x lora_plus_scaler (16; use in the paper UNVERIFIED)"),
    "task.protocol": ("t5_generate", "accuracy: LoRA-GA utils.py compute_metrics (first token); accuracy_official: "
                      "scripts/gora/t5_test.py greedy exact label (the paper's use: UNVERIFIED)"),
}


# ---- the baselines' own settings ---------------------------------------------------------------------------
# What each method's own paper or code fixes about it, checked wherever a paper table runs it (a baseline runs
# as its own paper ran it unless an experiment's source says otherwise): e.g. an rsLoRA without use_rslora,
# a DoRA without use_dora or a LoRA given LoRA+ is not the method the paper number is for.
_NO_LORAPLUS: dict[str, Setting] = {"trainer.loraplus_lr_ratio": (
    None, "LoRA+ is its own method (arXiv 2402.12354): no baseline paper trains with it; only GoRA's scripts set it")}
_PLAIN = {"adapter.use_rslora": (False, "alpha/r scaling (LoRA arXiv 2106.09685 §4.1)"),
          "adapter.use_dora": (False, "no magnitude vector (not DoRA)"), **_NO_LORAPLUS}
BASELINES: dict[str, dict[str, Setting]] = {
    "lora": {"adapter.init": ("lora", "LoRA arXiv 2106.09685: A random (kaiming, peft), B = 0"), **_PLAIN},
    "lora_gaussian": {"adapter.init": ("lora_gaussian", "LoRA arXiv 2106.09685 §4.1: A ~ N(0, sigma^2), B = 0"),
                      **_PLAIN},
    "rslora": {"adapter.init": ("lora", "rsLoRA arXiv 2312.03732: LoRA's init"),
               "adapter.use_rslora": (True, "rsLoRA arXiv 2312.03732: scaling alpha/sqrt(r)"),
               "adapter.use_dora": (False, "rsLoRA: no magnitude vector"), **_NO_LORAPLUS},
    "dora": {"adapter.init": ("lora", "DoRA arXiv 2402.09353: LoRA's init of the direction"),
             "adapter.use_dora": (True, "DoRA arXiv 2402.09353: magnitude + direction"),
             "adapter.use_rslora": (False, "DoRA: alpha/r"), **_NO_LORAPLUS},
    "pissa": {"adapter.init": ("pissa", "PiSSA arXiv 2404.02948v4: principal singular components"), **_PLAIN},
    "milora": {"adapter.init": ("milora", "MiLoRA arXiv 2406.09044: minor singular components"), **_PLAIN},
    "olora": {"adapter.init": ("olora", "OLoRA arXiv 2406.01775: QR of W"), **_PLAIN},
    "corda": {"adapter.init": ("corda", "CorDA arXiv 2406.05223: context-oriented decomposition"), **_PLAIN},
    "lora_ga": {"adapter.init": ("lora_ga", "LoRA-GA arXiv 2407.05000: gradient SVD"),
                "adapter.use_rslora": (True, _LGA + "Readme: LoRA-GA = peft.use_rslora=True, init.weight=stable"),
                "adapter.options.scale": ("stable", _LGA_INIT + ": scale stable"),
                "adapter.options.direction": ("ArB2r", _LGA_INIT + ": direction ArB2r"),
                "adapter.options.stable_gamma": (16, _LGA_INIT + ": stable_gamma 16"),
                "adapter.use_dora": (False, "LoRA-GA: no magnitude vector"), **_NO_LORAPLUS},
    "eva": {"adapter.init": ("eva", "EVA arXiv 2410.07170v5"),
            "adapter.options.rho": (2.0, "adapter=eva is EVA with rho=2 (peft's and ml-jku/EVA's default)"),
            **_PLAIN},
    "eva_rho1": {"adapter.init": ("eva", "EVA arXiv 2410.07170v5"),
                 "adapter.options.rho": (1.0, "EVA Table 11: rho=1, every layer keeps rank r"), **_PLAIN},
    "gora": {"adapter.init": ("gora", "GoRA arXiv 2502.12171"),
             "adapter.use_rslora": (True, _GS + " --gora-rank-stablize (alpha/sqrt(r_i))"),
             "adapter.use_dora": (False, "GoRA: no magnitude vector")},
    "full_ft": {"adapter.init": ("full_ft", "every parameter trained, no LoRA matrices"), **_NO_LORAPLUS},
}
