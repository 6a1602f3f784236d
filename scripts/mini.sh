#!/usr/bin/env bash
# make mini: the reproduce pipeline with a CPU preset on a real pretrained model, SmolLM2-135M-Instruct
# (make real-model), a fixed GSM8K training subset and teacher-forced held-out diagnostics instead of
# accuracy (greedy accuracy is ~0 at this size and generation is slow on CPU). Presets: configs/mini/*.yaml.
#
#   make mini                        # or: PYTHON=.venv/bin/python bash scripts/mini.sh
#   OUT=/tmp/mini ASSETS= bash scripts/mini.sh    # elsewhere, without copying into assets/
#   make mini-full                   # full fine-tuning variant: configs/mini_full/*.yaml -> assets/mini_full/
#
# Trains LoRA SFT and 8-shot distillation (and the 0-shot-teacher and shuffled-answer controls unless
# CONTROLS=no), scores every checkpoint and both base
# rows on held-out test rows, draws the figures, and copies the small outputs (results JSON, per-row
# JSONL, metrics.jsonl, run_info.json, figures, tables) into $ASSETS (default assets/mini/) and the
# loss figure to assets/loss_comparison.png. Re-running continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

export PYTHON=${PYTHON:-python}
export OUT=${OUT:-mini_out}
ASSETS=${ASSETS-assets/mini}
LOSS_FIGURE=${LOSS_FIGURE-assets/loss_comparison.png}   # empty: not copied
export ACCELERATE_USE_CPU=${ACCELERATE_USE_CPU:-true}
# accelerate launch sets 1 thread per process unless told otherwise; one process uses every core here.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

MODEL=${MODEL:-models/smollm2-135m-instruct}
if [ "$MODEL" = models/smollm2-135m-instruct ]; then
  $PYTHON scripts/get_real_model.py --out "$MODEL"
fi
DATA=${DATA:-../shared/data/gsm8k}
export BASE_CONFIG=${BASE_CONFIG:-configs/mini/baseline.yaml} ONLINE_CONFIG=${ONLINE_CONFIG:-configs/mini/online_v1.yaml}
export LAUNCH=${LAUNCH:---num_processes 1}
export TRAIN_OVERRIDES="model.name=$MODEL data.path=$DATA ${TRAIN_OVERRIDES:-}"
export EVAL_OVERRIDES="model.name=$MODEL data.path=$DATA ${EVAL_OVERRIDES:-}"
export CONTROLS=${CONTROLS:-yes} ACCURACY=no
export CONTROL_OVERRIDES=${CONTROL_OVERRIDES:-eval.held_out_examples=0}
export DIAG_SAMPLES=${DIAG_SAMPLES:-24} DIAG_BATCH=${DIAG_BATCH:-4}
summary=$($PYTHON - "$BASE_CONFIG" $TRAIN_OVERRIDES <<'PY'
import sys
from fewshot_distill.config import load_config
cfg = load_config(sys.argv[1], sys.argv[2:])
t = cfg.training
batch = t.per_device_train_batch_size * t.gradient_accumulation_steps
print(f"{cfg.data.max_train_examples} train rows, {t.max_steps} steps x batch {batch}, "
      f"{cfg.data.num_fewshot_examples}-shot teacher, CPU fp32"
      + (", full fine-tuning" if cfg.model.finetune == "full" else ""))
PY
)
if [ "$MODEL" = models/smollm2-135m-instruct ]; then
  model_text="SmolLM2-135M-Instruct (real weights)"
else
  model_text="model $(basename "$MODEL")"
fi
export TITLE=${TITLE:-"$model_text, GSM8K: $summary; held-out: $DIAG_SAMPLES test rows"}

start=$SECONDS
bash scripts/pipeline.sh
wall=$(( SECONDS - start ))
$PYTHON - "$OUT/pipeline_times.json" "$wall" <<'PY'
import json, sys
path, wall = sys.argv[1], int(sys.argv[2])
times = json.load(open(path))
times["mini_wall_seconds"] = wall
json.dump(times, open(path, "w"), indent=2)
PY

if [ -n "$ASSETS" ]; then
  mkdir -p "$ASSETS"
  cp "$OUT/diagnostics.json" "$OUT/diagnostics.rows.jsonl" "$OUT/diagnostics.md" "$OUT/pipeline_times.json" \
     "$OUT"/*.png "$ASSETS/"
  for run in "$OUT"/experiments/*/; do
    name=$(basename "$run")
    mkdir -p "$ASSETS/$name"
    cp "$run/metrics.jsonl" "$run/run_info.json" "$run/run_config.yaml" "$ASSETS/$name/"
  done
  if [ -n "$LOSS_FIGURE" ]; then
    cp "$OUT/loss_comparison.png" "$LOSS_FIGURE"
  fi
  echo "copied the small outputs to $ASSETS/ ${LOSS_FIGURE:+and $LOSS_FIGURE}"
fi
echo "== make mini finished in $wall s"
