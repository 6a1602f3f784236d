#!/usr/bin/env bash
# make mini-onpolicy: the on-policy runs of make mini (same model, rows, steps and held-out diagnostics),
# compared against the committed off-policy runs in assets/mini/ instead of re-training them.
#
#   make mini-onpolicy               # or: PYTHON=.venv/bin/python bash scripts/mini_onpolicy.sh
#   MSE=yes bash scripts/mini_onpolicy.sh            # also the MSE run (another ~70 s per step on 2 cores)
#   TRAIN_OVERRIDES="eval.held_out_examples=0" bash scripts/mini_onpolicy.sh   # key=value for every run
#   TRAIN=no CHECKPOINT_STEPS="3" bash scripts/mini_onpolicy.sh   # diagnostics of the checkpoints there are
#
# Trains `onpolicy` (configs/mini/onpolicy.yaml: the student's own samples, reverse KL, base teacher)
# and, with MSE=yes, `onpolicy_mse` (the same with the paper's MSE: only the answer source differs
# from assets/mini/online_v1, besides the CE it cannot have), scores every checkpoint and both base rows
# on the same held-out test rows as make mini, and copies the small outputs (diagnostics JSON, per-row
# JSONL, each run's metrics.jsonl / run_info.json / run_config.yaml / samples.jsonl) into $ASSETS
# (default assets/mini_onpolicy/). Re-running continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
OUT=${OUT:-mini_out/onpolicy}
ASSETS=${ASSETS-assets/mini_onpolicy}
export ACCELERATE_USE_CPU=${ACCELERATE_USE_CPU:-true}
# One thread: sampling is thousands of tiny ops per token, and on a shared machine a descheduled
# OpenMP thread stalls every one of them (2 threads under load: ~3 s per sampled token).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MODEL=${MODEL:-models/smollm2-135m-instruct}
if [ "$MODEL" = models/smollm2-135m-instruct ]; then
  $PYTHON scripts/get_real_model.py --out "$MODEL"
fi
DATA=${DATA:-../shared/data/gsm8k}
CONFIG=configs/mini/onpolicy.yaml
EXP="$OUT/experiments"
mkdir -p "$EXP"

train_run() {  # NAME [key=value ...]
  local name=$1 dir="$EXP/$1" mode=()
  shift
  if [ -d "$dir/final" ]; then echo "== $name: finished earlier, skipped"; return; fi
  if compgen -G "$dir/checkpoint-*" > /dev/null; then mode=(--resume); elif [ -d "$dir" ]; then mode=(--overwrite); fi
  echo "== train $name ${mode[*]:-} ($(date -u +%H:%M:%S))"
  $PYTHON -m accelerate.commands.launch --num_processes 1 -m fewshot_distill.train --config "$CONFIG" \
    --output_dir "$dir" "${mode[@]}" model.name="$MODEL" data.path="$DATA" ${TRAIN_OVERRIDES:-} "$@"
}

start=$SECONDS
RUNS=(onpolicy)
[ "${MSE:-no}" = yes ] && RUNS+=(onpolicy_mse)
if [ "${TRAIN:-yes}" = yes ]; then
  train_run onpolicy
  [ "${MSE:-no}" = yes ] && train_run onpolicy_mse distillation.loss=mse eval.held_out_examples=0
fi
read -r -a STEP_ARGS <<< "${CHECKPOINT_STEPS:+--checkpoint_steps $CHECKPOINT_STEPS}"
train_seconds=$(( SECONDS - start ))

echo "== held-out diagnostics ($(date -u +%H:%M:%S))"
t0=$SECONDS
$PYTHON scripts/eval_diagnostics.py --config "$CONFIG" --conditions base_0shot icl_8shot "${RUNS[@]}" \
  --base_dir "$EXP" --n_samples "${DIAG_SAMPLES:-24}" --batch_size "${DIAG_BATCH:-4}" "${STEP_ARGS[@]}" \
  --output "$OUT/diagnostics.json" model.name="$MODEL" data.path="$DATA"
diag_seconds=$(( SECONDS - t0 ))
# train_seconds counts the runs trained by this invocation only (each run's own time is in its metrics.jsonl)
echo "{\"train_seconds\": $train_seconds, \"diagnostics_seconds\": $diag_seconds, \"mini_wall_seconds\": $(( SECONDS - start ))}" \
  > "$OUT/pipeline_times.json"

if [ -n "$ASSETS" ]; then
  mkdir -p "$ASSETS"
  cp "$OUT/diagnostics.json" "$OUT/diagnostics.rows.jsonl" "$OUT/pipeline_times.json" "$ASSETS/"
  for name in "${RUNS[@]}"; do
    mkdir -p "$ASSETS/$name"
    cp "$EXP/$name/metrics.jsonl" "$EXP/$name/run_info.json" "$EXP/$name/run_config.yaml" \
       "$EXP/$name/samples.jsonl" "$ASSETS/$name/"
  done
  echo "copied the small outputs to $ASSETS/"
fi
echo "== make mini-onpolicy finished in $(( SECONDS - start )) s"
