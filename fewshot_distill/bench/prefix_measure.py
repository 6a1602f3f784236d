"""The prefix-teacher tolerance measured on step_bench's fixed-shot batches and random weights.

fewshot_distill/bench/prefix_tolerance.py's comparison at a bench shape, for scripts/prefix_tolerance.py and the
prefix stage of `make gpu-check` (its own module: step_bench imports prefix_tolerance).
"""

from __future__ import annotations

import torch

from fewshot_distill.bench.prefix_tolerance import compare_with_full_teacher
from fewshot_distill.teachers.shot_prefix import SharedPrefixTeacher


def measure(bench_argv: list[str]) -> dict:
    """The comparison on real fixed-shot batches with random weights of a bench shape: `bench_argv` are
    step_bench's options (shape, data, tokenizer, device, dtype, batch size, K)."""
    from fewshot_distill.bench import step_bench
    from fewshot_distill.bench.step_data import build_batches
    from fewshot_distill.bench.step_variants import build_models, public_args
    from fewshot_distill.models.student import AnswerWindowLM

    args = step_bench.parse_args(bench_argv + ["--variants", "sft,fixed_reuse"])
    device = torch.device(args.device)
    data = build_batches(args)
    peft_model, _ = build_models(args, device, with_teacher_copy=False)
    shot_prefix = SharedPrefixTeacher(AnswerWindowLM(peft_model.eval()), data["shot_prefix_ids"])
    batches = [{k: v.to(device) for k, v in b.items()} for b in data["fixed_batches"]]
    report = compare_with_full_teacher(shot_prefix, batches, args.k,
                                       autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None)
    report.update(shape=args.model, weights_dtype=args.dtype, shot_prefix=shot_prefix.stats(),
                  lengths=data["lengths"], args=public_args(args))
    return report
