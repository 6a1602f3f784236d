"""Evaluate base-model rows and training checkpoints on GSM8K test (greedy, exact-match accuracy).

One vLLM engine holds the base model; every checkpoint of every condition is a LoRA request on it.
Results are written after each (condition, label), and a re-run with the same --output resumes.
See docs/evaluation.md.

    CUDA_VISIBLE_DEVICES=0,1,2,3 python scripts/eval_checkpoints.py --config configs/base.yaml \
        --n_samples 1319 --conditions base_0shot icl_8shot baseline online_v1 --base_dir experiments \
        --checkpoint_steps 200 400 600 800 1000 --output experiments/online_v1_full_eval.json \
        --tensor_parallel_size 4

    # CPU smoke run (tiny model, transformers backend):
    python scripts/eval_checkpoints.py --config configs/base.yaml --conditions base_0shot \
        --output /tmp/eval.json --backend hf --max_new_tokens 16 model.name=/tmp/tiny data.path=data/smoke
"""

from __future__ import annotations

import sys

from fewshot_distill.eval.evaluate import main

# The guard matters: vLLM starts worker processes that re-import this file.
if __name__ == "__main__":
    sys.exit(main(description=__doc__))
