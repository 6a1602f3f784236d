#!/usr/bin/env bash
# One pipeline from training to figures, shared by scripts/mini.sh (CPU preset, SmolLM2-135M) and
# scripts/reproduce.sh (the paper's setting on GPUs). Not meant to be called directly: the callers set
#
#   OUT             output folder (run folders in $OUT/experiments, results, figures)
#   BASE_CONFIG     config of the SFT run (and of evaluation/diagnostics: model, data, seed)
#   ONLINE_CONFIG   config of the distillation run
#   LAUNCH          accelerate launch arguments, e.g. "--num_processes 1" or "--multi_gpu --num_processes 4"
#   TRAIN_OVERRIDES extra key=value overrides for every training run (space-separated)
#   EVAL_OVERRIDES  key=value overrides for evaluation and diagnostics (space-separated)
#   DISTILL_OVERRIDES extra key=value overrides of the distillation runs (online_v1 and the controls)
#   CONTROL_OVERRIDES extra key=value overrides of the two control runs
#   CONTROLS        "yes" (default: also train the 0-shot-teacher and shuffled-answer controls) or "no"
#   ACCURACY        "yes": GSM8K accuracy of every checkpoint with scripts/eval_checkpoints.py ($EVAL_ARGS)
#   DIAG_SAMPLES    held-out rows of scripts/eval_diagnostics.py; DIAG_BATCH rows per forward
#   DEV_EXAMPLES    N > 0 (with ACCURACY=yes and data.dev_examples=N in TRAIN_OVERRIDES and EVAL_OVERRIDES):
#                   every checkpoint is also scored on the dev split, and the tables and figures add the
#                   dev-selected checkpoint beside best and final
#   TITLE           text written on the figures (model and scale)
#
# Re-running the same command continues: a finished run (final/) is skipped, a run with checkpoints is
# resumed with --resume, and evaluation/diagnostics resume from their results files.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
read -r -a LAUNCH_ARGS <<< "${LAUNCH:---num_processes 1}"
read -r -a TRAIN_ARGS <<< "${TRAIN_OVERRIDES:-}"
read -r -a DISTILL_ARGS <<< "${DISTILL_OVERRIDES:-}"
read -r -a EVAL_ARGS_ <<< "${EVAL_OVERRIDES:-}"
read -r -a ACCURACY_ARGS <<< "${EVAL_ARGS:-}"
EXP="$OUT/experiments"
mkdir -p "$EXP"

train_run() {  # NAME METHOD CONFIG [key=value ...]
  local name=$1 method=$2 config=$3
  shift 3
  local dir="$EXP/$name" mode=()
  if [ -d "$dir/final" ]; then
    echo "== $name: finished earlier ($dir/final), skipped"
    return
  fi
  if compgen -G "$dir/checkpoint-*" > /dev/null; then
    mode=(--resume)
  elif [ -d "$dir" ]; then
    mode=(--overwrite)  # a run that stopped before its first checkpoint: nothing to keep
  fi
  echo "== train $name ${mode[*]:-} ($(date -u +%H:%M:%S))"
  local t0=$SECONDS
  $PYTHON -m accelerate.commands.launch "${LAUNCH_ARGS[@]}" -m fewshot_distill.train --config "$config" \
    --output_dir "$dir" "${mode[@]}" "method=$method" "${TRAIN_ARGS[@]}" "$@"
  echo "== $name trained in $(( SECONDS - t0 )) s"
}

start=$SECONDS
RUNS=(baseline online_v1)
train_run baseline baseline "$BASE_CONFIG"
train_run online_v1 online_v1 "$ONLINE_CONFIG" "${DISTILL_ARGS[@]}"
if [ "${CONTROLS:-yes}" = yes ]; then
  # = configs/ablations/{zeroshot_teacher,shuffled_answers}.yaml on top of $ONLINE_CONFIG
  read -r -a CONTROL_ARGS <<< "${CONTROL_OVERRIDES:-}"
  train_run online_zeroshot online_v1 "$ONLINE_CONFIG" "${DISTILL_ARGS[@]}" \
    distillation.teacher_context=zeroshot "${CONTROL_ARGS[@]}"
  train_run online_shuffled online_v1 "$ONLINE_CONFIG" "${DISTILL_ARGS[@]}" \
    distillation.teacher_context=shuffled_answers "${CONTROL_ARGS[@]}"
  RUNS+=(online_zeroshot online_shuffled)
fi
train_seconds=$(( SECONDS - start ))

# The few-shot base row, icl_{k}shot for this config's k (fewshot_distill/run_identity.py).
ICL=$($PYTHON - "$BASE_CONFIG" "${EVAL_ARGS_[@]}" <<'PY'
import sys
from fewshot_distill.config import load_config
from fewshot_distill.run_identity import icl_condition
print(icl_condition(load_config(sys.argv[1], sys.argv[2:]).data.num_fewshot_examples))
PY
)

if [ "${ACCURACY:-no}" = yes ]; then
  echo "== accuracy of every checkpoint ($(date -u +%H:%M:%S))"
  $PYTHON scripts/eval_checkpoints.py --config "$BASE_CONFIG" --conditions base_0shot "$ICL" "${RUNS[@]}" \
    --base_dir "$EXP" --output "$OUT/eval.json" "${ACCURACY_ARGS[@]}" "${EVAL_ARGS_[@]}"
  if [ "${DEV_EXAMPLES:-0}" -gt 0 ]; then
    echo "== dev-split accuracy of every checkpoint ($DEV_EXAMPLES rows; $(date -u +%H:%M:%S))"
    $PYTHON scripts/eval_checkpoints.py --config "$BASE_CONFIG" --conditions "${RUNS[@]}" --split dev \
      --base_dir "$EXP" --output "$OUT/dev_eval.json" "${ACCURACY_ARGS[@]}" "${EVAL_ARGS_[@]}"
  fi
fi

echo "== held-out diagnostics of every checkpoint and both base rows ($(date -u +%H:%M:%S))"
t0=$SECONDS
$PYTHON scripts/eval_diagnostics.py --config "$ONLINE_CONFIG" --conditions base_0shot "$ICL" "${RUNS[@]}" \
  --base_dir "$EXP" --n_samples "${DIAG_SAMPLES:-64}" --batch_size "${DIAG_BATCH:-4}" \
  --output "$OUT/diagnostics.json" "${EVAL_ARGS_[@]}"
diag_seconds=$(( SECONDS - t0 ))

echo "== figures and tables"
TITLE=${TITLE:-}
$PYTHON scripts/plot_curves.py --runs "$EXP/baseline" "$EXP/online_v1" --title "$TITLE" \
  --out "$OUT/loss_comparison.png"
$PYTHON scripts/plot_diagnostics.py --results "$OUT/diagnostics.json" --title "$TITLE" \
  --runs "${RUNS[@]/#/$EXP/}" --out_dir "$OUT"
if [ "${ACCURACY:-no}" = yes ]; then
  $PYTHON scripts/gen_main_fig.py --results "$OUT/eval.json" --out "$OUT/main_comparison.png"
  if [ "${DEV_EXAMPLES:-0}" -gt 0 ]; then
    $PYTHON scripts/write_results.py --results "$OUT/eval.json" --select dev --dev_results "$OUT/dev_eval.json" \
      --out "$OUT/results.md"
    $PYTHON scripts/plot_transfer.py --results "$OUT/eval.json" --select dev --dev_results "$OUT/dev_eval.json" \
      --selection_out "$OUT/checkpoint_selection.png"
  else
    $PYTHON scripts/write_results.py --results "$OUT/eval.json" --out "$OUT/results.md"
  fi
fi
echo "{\"train_seconds\": $train_seconds, \"diagnostics_seconds\": $diag_seconds, \"total_seconds\": $(( SECONDS - start ))}" \
  > "$OUT/pipeline_times.json"
echo "== pipeline finished in $(( SECONDS - start )) s (training $train_seconds s, diagnostics $diag_seconds s)"
