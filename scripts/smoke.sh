#!/usr/bin/env bash
# Tiny end-to-end run, offline, on CPU in a few minutes: the real entry points on an embedded default
# (a random-initialised tiny Qwen3 from make_tiny_model.py and the project's own GSM8K-format problems
# in data/smoke/). Trains the LoRA SFT baseline and the distillation run, evaluates their checkpoints
# and the two base-model rows, and draws the figures and tables into $OUT (never over assets/).
#
#   make smoke                      # or: PYTHON=.venv/bin/python OUT=smoke_out bash scripts/smoke.sh
#
# The numbers are meaningless (a random 2-layer model); the run proves the pipeline works end to end.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
OUT=${OUT:-smoke_out}
export ACCELERATE_USE_CPU=${ACCELERATE_USE_CPU:-true}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}

rm -rf "$OUT"
mkdir -p "$OUT"
start=$(date +%s)

echo "== tiny model -> $OUT/tiny_model"
$PYTHON scripts/make_tiny_model.py --out "$OUT/tiny_model"

TRAIN_OVERRIDES=(
  "model.name=$OUT/tiny_model" "data.path=data/smoke" "data.num_workers=0"
  "training.max_steps=40" "training.save_steps=20" "training.logging_steps=2" "training.warmup_steps=4"
  "training.per_device_train_batch_size=4" "training.gradient_accumulation_steps=2" "training.lr=2e-3"
  "training.bf16=false"
)
for method in baseline online_v1; do
  config=configs/base.yaml
  [ "$method" = online_v1 ] && config=configs/online_v1.yaml
  echo "== train $method"
  $PYTHON -m accelerate.commands.launch --num_processes 1 -m fewshot_distill.train \
    --config "$config" --output_dir "$OUT/experiments/$method" "${TRAIN_OVERRIDES[@]}"
done

echo "== evaluate (vLLM when installed, else transformers)"
$PYTHON scripts/eval_checkpoints.py --config configs/base.yaml --n_samples 32 \
  --conditions base_0shot icl_8shot baseline online_v1 --base_dir "$OUT/experiments" \
  --checkpoint_steps 20 40 --output "$OUT/eval.json" --max_new_tokens 32 \
  "model.name=$OUT/tiny_model" "data.path=data/smoke"

echo "== figures and tables"
$PYTHON scripts/gen_main_fig.py --results "$OUT/eval.json" --out "$OUT/main_comparison.png"
$PYTHON scripts/plot_curves.py --runs "$OUT/experiments/baseline" "$OUT/experiments/online_v1" \
  --results "$OUT/eval.json" --out "$OUT/loss_comparison.png"
$PYTHON scripts/write_results.py --results "$OUT/eval.json" --out "$OUT/results.md"

echo
echo "== smoke run finished in $(( $(date +%s) - start )) s"
for method in baseline online_v1; do
  echo "$method: $(ls -d "$OUT/experiments/$method"/checkpoint-* "$OUT/experiments/$method/final" | xargs -n1 basename | tr '\n' ' ')"
  tail -n 1 "$OUT/experiments/$method/metrics.jsonl"
done
echo "evaluation: $OUT/eval.json (+ predictions.jsonl); figures: $OUT/main_comparison.png $OUT/loss_comparison.png; tables: $OUT/results.md"
