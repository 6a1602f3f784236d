"""How far the shared-prefix teacher's top-K is from the full-sequence teacher's, measured on real
fixed-shot GSM8K batches with random weights of a bench shape (no timing). The comparison itself is
src/bench/prefix_tolerance.py; the bench's options and batches are src/bench/step_bench.py's.

    python scripts/prefix_tolerance.py --model tiny --dtype bfloat16 --json docs/prefix_tolerance_tiny_bf16.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from src.bench import step_bench
from src.bench.prefix_tolerance import compare_with_full_teacher
from src.models.prefix_teacher import SharedPrefixTeacher
from src.models.student import AnswerWindowLM


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    known, rest = parser.parse_known_args(argv)
    # The bench's own options (shape, data, tokenizer, dtype, batch size, K) and batches.
    args = step_bench.parse_args(rest + ["--variants", "sft,fixed_reuse"])
    device = torch.device(args.device)
    data = step_bench.build_batches(args)
    peft_model, _ = step_bench.build_models(args, device, with_teacher_copy=False)
    shot_prefix = SharedPrefixTeacher(AnswerWindowLM(peft_model.eval()), data["shot_prefix_ids"])
    batches = [{k: v.to(device) for k, v in b.items()} for b in data["fixed_batches"]]
    report = compare_with_full_teacher(shot_prefix, batches, args.k,
                                       autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None)
    report.update(shape=args.model, weights_dtype=args.dtype, shot_prefix=shot_prefix.stats(),
                  lengths=data["lengths"], args=step_bench.public_args(args))
    Path(known.json).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("lengths", "args")}))
    return report


if __name__ == "__main__":
    main()
