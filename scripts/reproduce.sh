#!/usr/bin/env bash
# make reproduce: the paper's pipeline on a GPU machine, from training to figures, in one command.
#
#   make reproduce                   # or: PYTHON=python OUT=reproduce_out bash scripts/reproduce.sh
#
# 1. trains LoRA SFT (configs/base.yaml) and SFT + 8-shot distillation (configs/online_v1.yaml), and the
#    0-shot-teacher / shuffled-answer controls (CONTROLS=yes, the default; no skips them);
# 2. evaluates base_0shot, icl_8shot and every checkpoint of every run with vLLM (eval_checkpoints.py);
# 3. runs the held-out diagnostics (eval_diagnostics.py) on the same entries;
# 4. regenerates the figures and tables into $OUT.
# The global batch stays GLOBAL_BATCH (32, the paper's): gradient accumulation = 32 / (GPUs x per-device
# batch 4). Re-running the same command continues: finished runs are skipped, interrupted ones resumed
# with --resume, evaluation and diagnostics resume from their results files.
# The distillation runs use the exact teacher cache (TEACHER_CACHE=disk, under each run's folder; it
# survives a resume): the teacher runs once per example instead of ~4.3 times. It changes no value
# (fewshot_distill/teachers/cache.py); TEACHER_CACHE=none runs the paper's online teacher every step.
# configs/ keep teacher_cache: none, the paper's loop.
#
# Environment overrides (the CPU test runs the whole script with a tiny model this way):
#   N_GPUS (default: torch.cuda.device_count()), PER_DEVICE (4), GLOBAL_BATCH (32), LAUNCH_EXTRA,
#   TRAIN_OVERRIDES, EVAL_OVERRIDES, EVAL_ARGS (default "--n_samples 1319"), DIAG_SAMPLES (64),
#   BASE_CONFIG, ONLINE_CONFIG, CONTROLS (yes), OUT (reproduce_out), TEACHER_CACHE (disk | memory | none),
#   PLAN_ONLY (yes: print the plan and stop before training),
#   DEV_EXAMPLES (0 = the paper's data, all 7,473 train rows; N > 0 holds back N seeded train rows as a dev
#   split: out of training and shots, every checkpoint scored on it, and the tables and figures report the
#   dev-selected checkpoint beside the paper's best and the final one).
set -euo pipefail
cd "$(dirname "$0")/.."

export PYTHON=${PYTHON:-python}
export OUT=${OUT:-reproduce_out}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}
# GPUs that NVML lists but this torch build cannot use (driver too old for its CUDA): one line now.
$PYTHON -c "from fewshot_distill.utils.gpu_env import check_gpu_setup; check_gpu_setup(fork_safe=False)"
N_GPUS=${N_GPUS:-$($PYTHON -c "import torch; print(torch.cuda.device_count())")}
PER_DEVICE=${PER_DEVICE:-4}
GLOBAL_BATCH=${GLOBAL_BATCH:-32}
if [ "$N_GPUS" -lt 1 ]; then
  echo "error: no GPU found (torch.cuda.device_count() = 0); make reproduce needs GPUs (set N_GPUS=1 with ACCELERATE_USE_CPU=true only for tests, or run make mini on CPU)" >&2
  exit 1
fi
if (( GLOBAL_BATCH % (N_GPUS * PER_DEVICE) != 0 )); then
  echo "error: the global batch $GLOBAL_BATCH is not divisible by $N_GPUS GPUs x $PER_DEVICE per device; use a GPU count that divides it (1, 2, 4, 8) or set PER_DEVICE" >&2
  exit 1
fi
ACCUMULATION=$(( GLOBAL_BATCH / (N_GPUS * PER_DEVICE) ))
echo "== $N_GPUS processes x $PER_DEVICE per device x $ACCUMULATION accumulation = global batch $GLOBAL_BATCH"

if [ "$N_GPUS" -gt 1 ]; then
  export LAUNCH="--multi_gpu --num_processes $N_GPUS ${LAUNCH_EXTRA:-}"
else
  export LAUNCH="--num_processes 1 ${LAUNCH_EXTRA:-}"
fi
export BASE_CONFIG=${BASE_CONFIG:-configs/base.yaml} ONLINE_CONFIG=${ONLINE_CONFIG:-configs/online_v1.yaml}
TEACHER_CACHE=${TEACHER_CACHE:-disk}
case "$TEACHER_CACHE" in
  none) echo "== teacher cache: none (the online teacher runs every step, as in the paper)" ;;
  memory|disk) echo "== teacher cache: $TEACHER_CACHE (exact: each example's teacher top-K computed once, reused in later epochs; TEACHER_CACHE=none for the paper's loop)" ;;
  *) echo "error: TEACHER_CACHE=$TEACHER_CACHE; use disk, memory or none" >&2; exit 1 ;;
esac
export TRAIN_OVERRIDES="training.per_device_train_batch_size=$PER_DEVICE training.gradient_accumulation_steps=$ACCUMULATION ${TRAIN_OVERRIDES:-}"
export DISTILL_OVERRIDES="distillation.teacher_cache=$TEACHER_CACHE ${DISTILL_OVERRIDES:-}"
export EVAL_OVERRIDES=${EVAL_OVERRIDES:-}
export DEV_EXAMPLES=${DEV_EXAMPLES:-0}
if [ "$DEV_EXAMPLES" -gt 0 ]; then
  # Training and evaluation both hold the dev rows back (evaluation: out of the few-shot row's shot pool).
  TRAIN_OVERRIDES="$TRAIN_OVERRIDES data.dev_examples=$DEV_EXAMPLES"
  EVAL_OVERRIDES="$EVAL_OVERRIDES data.dev_examples=$DEV_EXAMPLES"
fi
export EVAL_ARGS=${EVAL_ARGS:-"--n_samples 1319"}
export ACCURACY=yes CONTROLS=${CONTROLS:-yes}
# The teacher reference is kept in host memory: rows x ~130 answer tokens x 151,936 x 4 bytes (~5 GB for 64).
export DIAG_SAMPLES=${DIAG_SAMPLES:-64} DIAG_BATCH=${DIAG_BATCH:-8}
export TITLE=${TITLE:-"paper setting: $BASE_CONFIG / $ONLINE_CONFIG, $N_GPUS GPUs, global batch $GLOBAL_BATCH"}
if [ "${PLAN_ONLY:-no}" = yes ]; then
  echo "== plan only: training overrides: $TRAIN_OVERRIDES; distillation runs also: $DISTILL_OVERRIDES"
  exit 0
fi
bash scripts/pipeline.sh
