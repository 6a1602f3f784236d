"""The step benchmark's inputs: model shapes at random weights, and real GSM8K rows tokenized into the
batches every variant times (fixed-shot batches too)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from fewshot_distill.utils.resources import ResourceError, loading

# Vocabulary 151,936 as in Qwen3 (covers the real tokenizer's 151,669 ids).
MODEL_SHAPES = {
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=64),
    "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, head_dim=64),
    # Qwen/Qwen3-1.7B's published config.
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128),
}
VOCAB_SIZE = 151_936
# The paper's schedule: 1000 optimizer steps x 32 examples over GSM8K train.
PAPER_STEPS, PAPER_BATCH = 1000, 32


def qwen3_config(shape: str, attn_implementation: str):
    from transformers import Qwen3Config

    if shape not in MODEL_SHAPES:
        raise SystemExit(f"--model must be one of {sorted(MODEL_SHAPES)}, got {shape!r}")
    config = Qwen3Config(vocab_size=VOCAB_SIZE, tie_word_embeddings=True, max_position_embeddings=40960,
                         rope_theta=1_000_000, **MODEL_SHAPES[shape])
    config._attn_implementation = attn_implementation
    return config


def read_rows(data_dir: Path) -> list[dict]:
    file = data_dir / "train.jsonl"
    if not file.is_file():
        raise ResourceError(f"{file} not found: pass --data a folder with GSM8K train.jsonl "
                            "(rows {question, answer}), e.g. ../shared/data/gsm8k")
    with open(file) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_batches(args) -> dict:
    """Tokenized real GSM8K examples -> random batches, length-grouped batches of the same examples,
    and length statistics of a larger sample."""
    from transformers import AutoTokenizer

    from fewshot_distill.config import DataConfig
    from fewshot_distill.data.examples import build_example, collate_examples
    from fewshot_distill.data.sampling import length_grouped_order, padded_tokens

    with loading("tokenizer", args.tokenizer, fix="--tokenizer ../shared/tokenizers/qwen3 (a tokenizer folder)"):
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = read_rows(Path(args.data))
    data_cfg = DataConfig(path=str(args.data), num_fewshot_examples=args.shots, max_seq_len_teacher=2560,
                          max_seq_len_student=512, num_workers=0)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(rows), generator=generator).tolist()
    n_sample = max(args.length_sample, args.batch_size * args.n_batches)
    examples = [build_example(tokenizer, rows, i, data_cfg, seed=42, with_teacher=True) for i in order[:n_sample]]

    bench_examples = examples[: args.batch_size * args.n_batches]

    def batches_of(chunk):
        return [collate_examples(chunk[b: b + args.batch_size], tokenizer.pad_token_id)
                for b in range(0, len(chunk), args.batch_size)]
    teacher_lengths = [len(e.teacher_input_ids) for e in bench_examples]
    grouped = length_grouped_order(range(len(bench_examples)), teacher_lengths, len(bench_examples))

    # Padding effect on a larger sample: micro-batches of batch_size inside optimizer steps of 32.
    all_lengths = [len(e.teacher_input_ids) for e in examples]
    real = sum(all_lengths[: len(all_lengths) // args.batch_size * args.batch_size])
    plain = padded_tokens(range(len(examples)), all_lengths, args.batch_size)
    grouped_all = padded_tokens(length_grouped_order(range(len(examples)), all_lengths, PAPER_BATCH),
                                all_lengths, args.batch_size)
    student_lengths = [len(e.student_input_ids) for e in examples]
    answer_lengths = [len(e.answer_ids) for e in examples]
    wants_fixed = args.flops_only or any(v in ("fixed", "fixed_reuse") for v in args.variants.split(","))
    fixed = (build_fixed_shot_data(tokenizer, rows, data_cfg, order[:n_sample], args.batch_size * args.n_batches,
                                   batches_of) if wants_fixed else {"fixed_lengths": {}})
    return {
        "batches": batches_of(bench_examples),
        "grouped_batches": batches_of([bench_examples[i] for i in grouped]),
        **fixed,
        "lengths": {
            **fixed.pop("fixed_lengths"),
            "sample_examples": len(examples),
            "teacher_median": statistics.median(all_lengths), "teacher_max": max(all_lengths),
            "student_median": statistics.median(student_lengths), "answer_median": statistics.median(answer_lengths),
            "teacher_padding_fraction_random": 1 - real / plain,
            "teacher_padding_fraction_grouped": 1 - real / grouped_all,
        },
        "n_unique": len(rows),
    }


def build_fixed_shot_data(tokenizer, rows: list[dict], data_cfg, indices: list[int], n_bench: int, batches_of
                          ) -> dict:
    """The same examples with one fixed set of shots (data.shot_sampling=fixed): their batches, the
    shared shot prefix the prefix-reuse teacher caches, and length statistics."""
    import dataclasses

    from fewshot_distill.data.examples import build_example
    from fewshot_distill.teachers.shot_prefix import fixed_shot_prefix_ids

    fixed_cfg = dataclasses.replace(data_cfg, shot_sampling="fixed")
    examples = [build_example(tokenizer, rows, i, fixed_cfg, seed=42, with_teacher=True) for i in indices]
    prefix_ids = fixed_shot_prefix_ids(examples, len(rows), fixed_cfg.num_fewshot_examples, seed=42)
    suffix_lengths = [len(e.teacher_input_ids) - len(prefix_ids) for e in examples]
    return {
        "fixed_batches": batches_of(examples[:n_bench]),
        "shot_prefix_ids": prefix_ids,
        "fixed_lengths": {"fixed_teacher_median": statistics.median(len(e.teacher_input_ids) for e in examples),
                          "fixed_shot_prefix": len(prefix_ids),
                          "fixed_suffix_median": statistics.median(suffix_lengths)},
    }
