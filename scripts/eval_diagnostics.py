"""Held-out diagnostics of base-model rows and training checkpoints, teacher-forced on GSM8K test answers.

For each entry: answer-token NLL, top-1 agreement with the gold token, KL(k-shot teacher || entry) over
the full vocabulary, the training objective's top-K MSE, and the share of the ICL gap closed (NLL and
KL). One forward per row and entry; the teacher's logits are computed once. Same flags and resume as
scripts/eval_checkpoints.py; see fewshot_distill/eval/diagnostics.py and docs/diagnostics.md.

    python scripts/eval_diagnostics.py --config configs/base.yaml --n_samples 64 \
        --conditions base_0shot icl_8shot baseline online_v1 --base_dir experiments \
        --output experiments/diagnostics.json model.name=models/smollm2-135m-instruct data.path=../shared/data/gsm8k
"""

from __future__ import annotations

import sys

from fewshot_distill.eval.diagnostics_run import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
