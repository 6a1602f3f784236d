"""Side-by-side step benchmark: SFT vs paper-style reference distillation vs ours.

Needs only torch, transformers and peft (GSM8K rows and the tokenizer are local paths), so it runs on
a bare GPU machine. The parent process tokenizes real GSM8K rows once into batches; every variant runs
in its own child process on the same batches and the same random-initialised weights (so the CPU
RSS peaks are separate), times warm-up + repeats, and reports its median step time and peak memory.

Variants:
  sft           student forward + backward (fewshot_distill/training/steps.sft_loss_step)
  reference     separate frozen teacher copy, full logits over whole sequences, top-K, CE + MSE
  ours          distillation_loss_step + AdapterDisabledTeacher (adapter-disabled teacher, answer
                positions only, answer-window student logits, chunked CE); also times the teacher alone
  ours_cached   the same step with the teacher cache: a miss step (empty cache) and a hit step
  ours_grouped  `ours` on the same examples regrouped by teacher length (fewshot_distill/data/sampling.py)
  fixed         `ours` on the same examples with one fixed set of shots for all (data.shot_sampling=fixed)
  fixed_reuse   `fixed` with distillation.reuse_shot_prefix: the shot prefix's keys/values computed once
                (fewshot_distill/teachers/shot_prefix.py), the teacher runs only each [question][answer] suffix
  onpolicy      the on-policy step (fewshot_distill/methods/onpolicy.py, answer_source=student, reverse KL): the student
                samples --gen-tokens new tokens per row (random weights rarely emit EOS, so every sample
                runs to the limit: the worst case), the adapter-disabled teacher scores them, the student
                trains on them; its time is split into generation, teacher and student (forward + backward)
  onpolicy_hf_micro, onpolicy_hf_step, onpolicy_vllm_merged, onpolicy_vllm_adapter
                one optimizer step of the on-policy method over all --n-batches micro-batches (the
                accumulation), reported per micro-batch: sampling with transformers once per micro-batch
                (as before), with transformers once per optimizer step, or with the in-process vLLM engine
                once per step (fewshot_distill/training/vllm_sampler.py), its weights synced each step by loading
                W + s*BA (merged) or as a new LoRA adapter (adapter); the sync is part of generation

`--flops-only` skips the timing and prints the FLOP model (per step and whole run) for the shape;
`--in-process` runs the variants in this process (quick checks such as `make bench-gpu --dry-run`;
peak memory is then not per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fewshot_distill.utils import gpu_env
from fewshot_distill.utils.resources import ResourceError, loading
from fewshot_distill.losses.alignment import student_answer_window

REPO_ROOT = Path(__file__).resolve().parents[2]
# One optimizer step of on-policy training: who samples, and how often (fewshot_distill/methods/onpolicy.py).
ONPOLICY_STEP_VARIANTS = {"onpolicy_hf_micro": ("hf", "micro"), "onpolicy_hf_step": ("hf", "step"),
                          "onpolicy_vllm_merged": ("merged", "step"), "onpolicy_vllm_adapter": ("adapter", "step")}
VARIANTS = ("sft", "reference", "ours", "ours_cached", "ours_grouped", "fixed", "fixed_reuse", "onpolicy",
            *ONPOLICY_STEP_VARIANTS)

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


# ----------------------------------------------------------------------------- data (parent process)

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
    from fewshot_distill.data.gsm8k_loader import build_example, collate_examples
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

    from fewshot_distill.data.gsm8k_loader import build_example
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


# ----------------------------------------------------------------------------- FLOP model

def forward_flops(cfg, batch_size: int, seq_len: int, head_positions: int, past_len: int = 0) -> float:
    """Matmul FLOPs of one forward: projections + MLP + causal attention, LM head at head_positions/row.

    `past_len`: cached keys/values every token also attends to (the shared shot prefix).
    """
    hidden, head_dim = cfg.hidden_size, cfg.head_dim
    projection_params = hidden * head_dim * (2 * cfg.num_attention_heads + 2 * cfg.num_key_value_heads)
    mlp_params = 3 * hidden * cfg.intermediate_size
    tokens = batch_size * seq_len
    # QK^T + AV: 4 * head_dim FLOPs per (query, key) pair; seq_len^2 / 2 causal pairs + seq_len x past_len.
    attention = 2 * batch_size * cfg.num_attention_heads * head_dim * seq_len * (seq_len + 2 * past_len)
    body = cfg.num_hidden_layers * (2 * tokens * (projection_params + mlp_params) + attention)
    return body + 2 * batch_size * head_positions * hidden * cfg.vocab_size


def ideal_flops(cfg, batch: dict, gradient_checkpointing: bool, fixed_batch: dict | None = None,
                prefix_len: int = 0) -> dict[str, float]:
    """Per variant. Backward of frozen weights = input gradients only ~= 1 forward (LoRA ignored).

    `fixed_batch`: the same examples with fixed shots; its teacher reads prefix_len cached tokens plus
    the longest suffix of the batch when the prefix is reused.
    """
    B, Ts = batch["student_input_ids"].shape
    Tt = batch["teacher_input_ids"].size(1)
    A = int((batch["student_labels"] != -100).sum(dim=1).max())
    recompute = 1 if gradient_checkpointing else 0
    student_window = (2 + recompute) * forward_flops(cfg, B, Ts, 0) + 2 * forward_flops(cfg, B, 0, A + 1)
    teacher_answer = forward_flops(cfg, B, Tt, A)
    sft = student_window
    flops = {
        "sft": sft,
        "reference": forward_flops(cfg, B, Tt, Tt) + (2 + recompute) * forward_flops(cfg, B, Ts, 0)
        + 2 * forward_flops(cfg, B, 0, Ts),
        "ours": teacher_answer + student_window,
        "ours_hit": sft,
        "teacher": teacher_answer,
    }
    if fixed_batch is not None:
        fixed_len = fixed_batch["teacher_input_ids"].size(1)
        suffix_len = int(fixed_batch["teacher_attention_mask"].sum(dim=1).max()) - prefix_len
        flops["teacher_fixed"] = forward_flops(cfg, B, fixed_len, A)
        flops["teacher_fixed_reuse"] = forward_flops(cfg, B, suffix_len, A, past_len=prefix_len)
        flops["fixed"] = flops["teacher_fixed"] + student_window
        flops["fixed_reuse"] = flops["teacher_fixed_reuse"] + student_window
        flops["shot_prefix_once"] = forward_flops(cfg, 1, prefix_len, 0)
    return flops


def whole_run_flops(flops: dict, batch_size: int, n_unique: int) -> dict[str, float]:
    """The paper schedule in FLOPs, each as a multiple of the SFT run.

    ours_cached: the teacher runs once per unique example (cache misses), every other step is SFT's
    plus nothing (= the floor in this model). fixed_reuse(_cached): the same with the suffix teacher,
    plus one prefix forward per process.
    """
    total = PAPER_STEPS * PAPER_BATCH
    per_example = {name: value / batch_size for name, value in flops.items()}
    sft_run = total * per_example["sft"]
    runs = {"reference": total * per_example["reference"], "ours_uncached": total * per_example["ours"],
            "ours_cached": n_unique * per_example["ours"] + (total - n_unique) * per_example["sft"]}
    if "fixed" in flops:
        runs["fixed_uncached"] = total * per_example["fixed"]
        runs["fixed_reuse_uncached"] = total * per_example["fixed_reuse"] + flops["shot_prefix_once"]
        runs["fixed_reuse_cached"] = (n_unique * per_example["fixed_reuse"] + (total - n_unique) * per_example["sft"]
                                      + flops["shot_prefix_once"])
    return {f"{name}_over_sft": value / sft_run for name, value in runs.items()}


# ----------------------------------------------------------------------------- worker (child process)

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_models(args, device: torch.device, with_teacher_copy: bool):
    import copy

    from transformers import Qwen3ForCausalLM

    from fewshot_distill.config import LoraConfig
    from fewshot_distill.models.student import add_lora

    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    config = qwen3_config(args.model, args.attn)
    torch.manual_seed(0)  # same random weights in every variant's process
    with torch.device(device):
        base = Qwen3ForCausalLM(config).to(dtype)
    teacher_copy = None
    if with_teacher_copy:
        teacher_copy = copy.deepcopy(base).eval().requires_grad_(False)
    peft_model = add_lora(base, LoraConfig(), gradient_checkpointing=args.gradient_checkpointing).to(device)
    peft_model.train()
    return peft_model, teacher_copy


class PeakMemory:
    """Peak memory of a stretch of work: torch.cuda's allocator peak, or the process's peak RSS on
    the CPU (which cannot be reset: per variant only when each variant is its own process)."""

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _time_steps(step, batches, warmup: int, repeats: int, device, memory: PeakMemory | None = None
                ) -> tuple[list[float], int | None]:
    """Step times after `warmup` passes, and (with `memory`) the peak of the timed steps alone, read
    before anything else runs."""
    for _ in range(warmup):
        for batch in batches:
            step(batch)
    if memory is not None:
        memory.reset()
    times = []
    for _ in range(repeats):
        for batch in batches:
            _sync(device)
            start = time.perf_counter()
            step(batch)
            _sync(device)
            times.append(time.perf_counter() - start)
    return times, memory.peak() if memory is not None else None


class _TimedTeacher:
    """A Teacher whose `top_k` calls are timed (the on-policy row's teacher share)."""

    def __init__(self, teacher, device: torch.device):
        self.teacher, self.device, self.seconds = teacher, device, 0.0

    def top_k(self, *args):
        _sync(self.device)
        start = time.perf_counter()
        out = self.teacher.top_k(*args)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        return out


def onpolicy_step_timer(args, student, peft_model, teacher, autocast, backward, device):
    """The on-policy step (generation, teacher, student) and the list its per-step split goes to."""
    from transformers import AutoTokenizer

    from fewshot_distill.losses.divergences import LossSpec
    from fewshot_distill.training.sampling import SampleSettings, StudentSampler
    from fewshot_distill.methods.onpolicy import onpolicy_loss_step

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    sampler = StudentSampler(peft_model, tokenizer, SampleSettings(args.gen_tokens, 1.0, 1.0, args.seed))
    timed = _TimedTeacher(teacher, device)
    splits: list[dict] = []

    def step(batch):
        timed.seconds = 0.0
        _sync(device)
        start = time.perf_counter()
        with autocast():
            terms = onpolicy_loss_step(student, batch, timed, sampler, "student", 1.0, args.alignment,
                                       LossSpec("reverse_kl"), pad_token_id=tokenizer.pad_token_id)
        backward(terms)
        _sync(device)
        total = time.perf_counter() - start
        generation = float(terms["gen_seconds"])
        splits.append({"generation_s": generation, "teacher_s": timed.seconds,
                       "student_s": total - generation - timed.seconds, "sample_len": float(terms["sample_len"])})

    return step, splits


class _StepCounter:
    """Stands in for the run: its `step` (optimizer steps done) seeds the samples and triggers a sync."""
    step = 0


def onpolicy_optimizer_step_timer(args, variant, student, peft_model, teacher, autocast, batches: list[dict],
                                  device, engine_dir: Path):
    """One on-policy optimizer step over every micro-batch (`variant` picks sampler and call pattern), and
    the list its per-step split goes to. `engine_dir`: where the vLLM engine reads the starting weights."""
    from transformers import AutoTokenizer

    from fewshot_distill.losses.divergences import LossSpec
    from fewshot_distill.training.sampling import SampleSettings, StudentSampler
    from fewshot_distill.methods.onpolicy import onpolicy_loss_step

    backend, calls = ONPOLICY_STEP_VARIANTS[variant]
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    counter = _StepCounter()
    sampler = StudentSampler(peft_model, tokenizer, SampleSettings(args.gen_tokens, 1.0, 1.0, args.seed), run=counter)
    startup = 0.0
    if backend != "hf":
        from safetensors.torch import save_file

        from fewshot_distill.training.vllm_sampler import VLLMSampleEngine, engine_dtype, merged_lora_weights

        # The random starting weights as a checkpoint folder (B = 0: merged = base), for the engine to load.
        config = peft_model.get_base_model().config
        config.architectures = ["Qwen3ForCausalLM"]  # a config built in code names none; vLLM picks by it
        config.save_pretrained(engine_dir)
        save_file({name: tensor.contiguous() for name, tensor in merged_lora_weights(peft_model, torch.float32)},
                  str(engine_dir / "model.safetensors"))
        tokenizer.save_pretrained(engine_dir)
        sampler.engine = VLLMSampleEngine(
            str(engine_dir), dtype=engine_dtype(args.dtype == "bfloat16"),
            max_model_len=max(int(m.sum()) for b in batches for m in b["student_attention_mask"])
            + args.gen_tokens, max_num_seqs=args.batch_size * args.n_batches, seed=args.seed, eos_ids=sampler.eos_ids,
            lora_rank=peft_model.peft_config["default"].r, weight_sync=backend)
        startup = sampler.engine.startup_seconds
    timed = _TimedTeacher(teacher, device)
    splits: list[dict] = []

    def step(batches):
        timed.seconds = 0.0
        _sync(device)
        start = time.perf_counter()
        if calls == "step":
            sampler.sample_step(batches, "student", 0.5)
        generation = sync = 0.0
        lengths = []
        for batch in batches:
            with autocast():
                terms = onpolicy_loss_step(student, batch, timed, sampler, "student", 1.0, args.alignment,
                                           LossSpec("reverse_kl"), pad_token_id=tokenizer.pad_token_id)
            (terms["loss"] / len(batches)).backward()
            generation += float(terms["gen_seconds"])
            lengths.append(float(terms["sample_len"]))
        for param in peft_model.parameters():  # the optimizer step itself is not timed in any variant
            param.grad = None
        _sync(device)
        total = time.perf_counter() - start
        if sampler.engine is not None:
            sync = sampler.engine.last_sync_seconds
        counter.step += 1
        n = len(batches)
        splits.append({"generation_s": generation / n, "teacher_s": timed.seconds / n, "sync_s": sync / n,
                       "student_s": (total - generation - timed.seconds) / n, "total_s": total / n,
                       "sample_len": statistics.mean(lengths)})

    return step, splits, startup


def run_variant(args, variant: str, data: dict, memory: PeakMemory | None = None) -> dict:
    """One variant's timings and peak memory. `memory`: the peak counter (default PeakMemory)."""
    from accelerate import Accelerator

    from fewshot_distill.bench.prefix_tolerance import compare_with_full_teacher
    from fewshot_distill.bench.reference import reference_distillation_losses
    from fewshot_distill.teachers.shot_prefix import SharedPrefixTeacher
    from fewshot_distill.models.student import AnswerWindowLM
    from fewshot_distill.training.precision import keep_low_precision_outputs
    from fewshot_distill.methods.distill import distillation_loss_step
    from fewshot_distill.methods.sft import sft_loss_step
    from fewshot_distill.teachers.base import AdapterDisabledTeacher
    from fewshot_distill.teachers.shot_prefix import ShotPrefixTeacher
    from fewshot_distill.teachers.cache import CachedTeacher, TeacherTopKCache

    device = torch.device(args.device)
    memory = memory or PeakMemory(device)
    if device.type == "cpu":
        # One thread: on a shared machine a descheduled OpenMP thread stalls every op of a
        # multi-threaded step, which made 2-thread timings vary 4x between runs.
        torch.set_num_threads(args.cpu_threads)
    batches = {"ours_grouped": data["grouped_batches"], "fixed": data.get("fixed_batches"),
               "fixed_reuse": data.get("fixed_batches")}.get(variant) or data["batches"]
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    peft_model, teacher_copy = build_models(args, device, with_teacher_copy=variant == "reference")
    # The student as training holds it (fewshot_distill/training/loop.py): prepared by accelerate, its forward
    # without the float32 output conversion, every forward under accelerator.autocast(). So the
    # window logits have training's dtype and the measured memory is training's.
    accelerator = Accelerator(mixed_precision="bf16" if args.dtype == "bfloat16" else "no",
                              cpu=device.type == "cpu")
    student = accelerator.prepare_model(AnswerWindowLM(peft_model))
    keep_low_precision_outputs(accelerator, student)
    autocast = accelerator.autocast
    shot_prefix = SharedPrefixTeacher(student, data["shot_prefix_ids"]) if variant == "fixed_reuse" else None
    online = (ShotPrefixTeacher(shot_prefix, args.k, args.alignment) if shot_prefix is not None
              else AdapterDisabledTeacher(student, args.k, args.alignment))
    cache = TeacherTopKCache("memory", context=f"bench-{args.model}-{args.k}-{args.alignment}")
    cached = CachedTeacher(online, cache)

    def backward(terms):
        terms["loss"].backward()
        for param in peft_model.parameters():
            param.grad = None

    def sft(batch):
        with autocast():
            terms = sft_loss_step(student, batch)
        backward(terms)

    def reference(batch):
        with autocast():
            terms = reference_distillation_losses(teacher_copy, peft_model, batch, args.k, args.lambda_distill,
                                                  args.alignment)
        backward(terms)

    def ours_with(teacher):
        def step(batch):
            with autocast():
                terms = distillation_loss_step(student, batch, teacher, args.lambda_distill, args.alignment)
            backward(terms)
        return step

    def teacher_only(batch):
        _, answer_mask, answer_ids = student_answer_window(batch["student_labels"])
        with autocast():
            online.top_k(batch, answer_ids, answer_mask)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"variant": variant}
    if shot_prefix is not None:  # the once-per-process prefix forward, timed on its own, warm
        with autocast():  # a throw-away teacher takes the first call's one-off costs (kernels, handles)
            SharedPrefixTeacher(student, data["shot_prefix_ids"]).prefix_key_values(device)
        _sync(device)
        start = time.perf_counter()
        with autocast():
            shot_prefix.prefix_key_values(device)
        _sync(device)
        result["shot_prefix_s"] = time.perf_counter() - start
        result["shot_prefix_tokens"] = shot_prefix.prefix_length
    if variant in ONPOLICY_STEP_VARIANTS:
        with tempfile.TemporaryDirectory() as engine_dir:
            step, splits, startup = onpolicy_optimizer_step_timer(args, variant, student, peft_model, online,
                                                                  autocast, batches, device, Path(engine_dir))
            times, peak = _time_steps(step, [batches], args.warmup, args.repeats, device, memory)
        timed_splits = splits[len(splits) - len(times):]
        times = [split["total_s"] for split in timed_splits]  # per micro-batch
        for part in ("generation", "teacher", "student", "sync"):
            result[f"{part}_step_s"] = statistics.median(split[f"{part}_s"] for split in timed_splits)
        result["sample_len"] = statistics.median(split["sample_len"] for split in timed_splits)
        result["gen_tokens"] = args.gen_tokens
        result["micro_batches_per_step"] = len(batches)
        result["engine_startup_s"] = startup
    elif variant == "onpolicy":
        step, splits = onpolicy_step_timer(args, student, peft_model, online, autocast, backward, device)
        times, peak = _time_steps(step, batches, args.warmup, args.repeats, device, memory)
        timed_splits = splits[len(splits) - len(times):]  # the warm-up steps' splits are dropped
        for part in ("generation", "teacher", "student"):
            result[f"{part}_step_s"] = statistics.median(split[f"{part}_s"] for split in timed_splits)
        result["sample_len"] = statistics.median(split["sample_len"] for split in timed_splits)
        result["gen_tokens"] = args.gen_tokens
    elif variant in ("sft", "reference", "ours", "ours_grouped", "fixed", "fixed_reuse"):
        step = {"sft": sft, "reference": reference}.get(variant) or ours_with(online)
        # The training step's peak is read right after its timed steps: the teacher-only timing and
        # the prefix comparison below are no-grad passes and must not replace it.
        times, peak = _time_steps(step, batches, args.warmup, args.repeats, device, memory)
        if variant in ("ours", "fixed", "fixed_reuse"):
            result["teacher_step_s"] = statistics.median(
                _time_steps(teacher_only, batches, 1, args.repeats, device)[0])
        if shot_prefix is not None:
            result["shot_prefix_stats"] = shot_prefix.stats()
            # Both alignments, every real answer position of the bench batches.
            result["prefix_vs_full_teacher"] = compare_with_full_teacher(
                shot_prefix, batches, args.k, autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None)
    else:  # ours_cached: alternate an empty-cache (miss) step and a full-cache (hit) step per batch
        step = ours_with(cached)
        hit_times = []
        miss_times = []
        for batch in batches:
            cache.entries.clear()
            step(batch)  # warm-up
        memory.reset()
        for _ in range(args.repeats):
            for batch in batches:
                cache.entries.clear()
                miss_times.append(_timed(step, batch, device))
                hit_times.append(_timed(step, batch, device))
        peak = memory.peak()
        times = hit_times
        result["miss_step_s"] = statistics.median(miss_times)
        result["cache_stats"] = cache.stats()
    result["median_step_s"] = statistics.median(times)
    result["min_step_s"] = min(times)
    result["step_times_s"] = times
    tokens = sum(int(b["student_attention_mask"].sum()) for b in batches) / len(batches)
    result["tokens_per_s"] = tokens / result["median_step_s"]
    result["peak_mem_bytes"] = peak
    if device.type != "cuda":
        result["rss_before_steps_bytes"] = rss_before
    return result


def public_args(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("worker", "batches_file", "result_file")}


def _timed(step, batch, device) -> float:
    _sync(device)
    start = time.perf_counter()
    step(batch)
    _sync(device)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- parent: report

def machine_info(device: str) -> dict:
    return {**gpu_env.machine_info(), "device": device, "torch_threads_parent": torch.get_num_threads()}


def whole_run(results: dict, batch_size: int, n_unique: int) -> dict:
    """Paper schedule from per-step costs: first sight of each example = miss step, the rest = hit."""
    total = PAPER_STEPS * PAPER_BATCH
    per_example = {name: r["median_step_s"] / batch_size for name, r in results.items()}
    out = {"examples_seen": total, "unique_examples": n_unique,
           "sft_s": total * per_example["sft"]}
    if "reference" in results:
        out["reference_s"] = total * per_example["reference"]
    if "ours" in results:
        teacher = results["ours"]["teacher_step_s"] / batch_size
        out["floor_s"] = out["sft_s"] + n_unique * teacher
        out["ours_uncached_s"] = total * per_example["ours"]
    if "ours_cached" in results:
        miss = results["ours_cached"]["miss_step_s"] / batch_size
        out["ours_cached_s"] = n_unique * miss + (total - n_unique) * per_example["ours_cached"]
    if "fixed" in results:
        out["fixed_uncached_s"] = total * per_example["fixed"]
    if "onpolicy" in results:  # every step samples anew: nothing to cache
        out["onpolicy_s"] = total * per_example["onpolicy"]
    if "fixed_reuse" in results:
        prefix_once = results["fixed_reuse"]["shot_prefix_s"]
        out["fixed_reuse_uncached_s"] = total * per_example["fixed_reuse"] + prefix_once
        if "ours_cached" in results:  # with the teacher cache: hit steps cost what ours' hit steps cost
            out["fixed_reuse_cached_s"] = (n_unique * per_example["fixed_reuse"]
                                           + (total - n_unique) * per_example["ours_cached"] + prefix_once)
    for name in ("reference_s", "floor_s", "ours_uncached_s", "ours_cached_s", "fixed_uncached_s",
                 "fixed_reuse_uncached_s", "fixed_reuse_cached_s", "onpolicy_s"):
        if name in out:
            out[name.replace("_s", "_over_sft")] = out[name] / out["sft_s"]
    if "floor_s" in out and "ours_cached_s" in out:
        out["ours_cached_over_floor"] = out["ours_cached_s"] / out["floor_s"]
    if "reference_s" in out and "ours_cached_s" in out:
        out["reference_over_ours_cached"] = out["reference_s"] / out["ours_cached_s"]
    return out


def format_table(results: dict, flops: dict, whole: dict) -> str:
    sft = results["sft"]
    lines = ["| variant | median step (s) | min step (s) | x SFT | ideal x SFT (FLOPs) | peak mem (MiB) | mem x SFT | "
             "student tokens/s |", "|---|---|---|---|---|---|---|---|"]
    rows = [(name, r["median_step_s"], r["peak_mem_bytes"], r["tokens_per_s"], flops.get(name), r["min_step_s"])
            for name, r in results.items() if name not in ONPOLICY_STEP_VARIANTS]
    if "ours_cached" in results:
        rows = [row for row in rows if row[0] != "ours_cached"]
        r = results["ours_cached"]
        rows.append(("ours, cache miss", r["miss_step_s"], r["peak_mem_bytes"], None, flops.get("ours"), None))
        rows.append(("ours, cache hit", r["median_step_s"], r["peak_mem_bytes"], r["tokens_per_s"],
                     flops.get("ours_hit"), r["min_step_s"]))
    for name, flop_name in (("ours", "teacher"), ("fixed", "teacher_fixed"), ("fixed_reuse", "teacher_fixed_reuse")):
        if name in results:
            rows.append((f"({name}: teacher top-K alone)", results[name]["teacher_step_s"], None, None,
                         flops.get(flop_name), None))
    for name, seconds, peak, tps, flop, fastest in rows:
        lines.append("| {} | {:.3f} | {} | {:.2f} | {} | {} | {} | {} |".format(
            name, seconds, f"{fastest:.3f}" if fastest else "-", seconds / sft["median_step_s"],
            f"{flop / flops['sft']:.2f}" if flop else "-",
            f"{peak / 2**20:.0f}" if peak else "-",
            f"{peak / sft['peak_mem_bytes']:.2f}" if peak else "-",
            f"{tps:.0f}" if tps else "-"))
    step_rows = [name for name in ONPOLICY_STEP_VARIANTS if name in results]
    if step_rows:
        lines.append("")
        lines.append(f"on-policy optimizer step ({results[step_rows[0]]['micro_batches_per_step']} micro-batches; "
                     "seconds per micro-batch):")
        lines.append("| variant | step (s) | x SFT | generation (s) | generation share | of which weight sync (s) "
                     "| teacher (s) | student (s) | peak mem (MiB) | engine start (s) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for name in step_rows:
            r = results[name]
            lines.append(f"| {name} | {r['median_step_s']:.3f} | {r['median_step_s'] / sft['median_step_s']:.2f} | "
                         f"{r['generation_step_s']:.3f} | {r['generation_step_s'] / r['median_step_s']:.0%} | "
                         f"{r['sync_step_s']:.3f} | {r['teacher_step_s']:.3f} | {r['student_step_s']:.3f} | "
                         f"{r['peak_mem_bytes'] / 2**20:.0f} | {r['engine_startup_s']:.1f} |")
        if "onpolicy_hf_micro" in results:
            base = results["onpolicy_hf_micro"]["median_step_s"]
            lines.append("step time / onpolicy_hf_micro: " + ", ".join(
                f"{name} {results[name]['median_step_s'] / base:.2f}x" for name in step_rows))
    if "onpolicy" in results:
        r = results["onpolicy"]
        for part in ("generation", "teacher", "student"):
            lines.append(f"| (onpolicy: {part}) | {r[f'{part}_step_s']:.3f} | - | "
                         f"{r[f'{part}_step_s'] / sft['median_step_s']:.2f} | - | - | - | - |")
        lines.append("")
        lines.append(f"onpolicy: {r['sample_len']:.0f} sampled tokens per row (--gen-tokens "
                     f"{r['gen_tokens']}); generation {r['generation_step_s'] / r['median_step_s']:.0%} "
                     "of its step")
    if "reference" in results and "ours" in results:
        lines.append("")
        lines.append(f"reference / ours (online step): {results['reference']['median_step_s'] / results['ours']['median_step_s']:.2f}x"
                     f" (ideal {flops['reference'] / flops['ours']:.2f}x)")
    if "reference" in results and "ours_cached" in results:
        lines.append(f"reference / ours (cache-hit step): "
                     f"{results['reference']['median_step_s'] / results['ours_cached']['median_step_s']:.2f}x "
                     f"(ideal {flops['reference'] / flops['ours_hit']:.2f}x)")
    if whole:
        lines.append("")
        lines.append(f"whole run ({PAPER_STEPS} x {PAPER_BATCH} over {whole['unique_examples']} unique examples), "
                     "from the per-step medians:")
        for key, value in whole.items():
            if key.endswith("_s"):
                lines.append(f"  {key[:-2]}: {value:.0f} s ({whole.get(key[:-2] + '_over_sft', 1.0):.2f}x SFT)")
        for key in ("ours_cached_over_floor", "reference_over_ours_cached"):
            if key in whole:
                lines.append(f"  {key}: {whole[key]:.3f}")
    return "\n".join(lines)


def format_flops(flops: dict, whole: dict) -> str:
    """The FLOP model: TFLOP per micro-batch and x SFT, then the whole-run multiples of the SFT run."""
    lines = ["| per micro-batch | TFLOP | x SFT |", "|---|---|---|"]
    for name, value in flops.items():
        lines.append(f"| {name} | {value / 1e12:.2f} | {value / flops['sft']:.2f} |")
    lines += ["", "| whole run (paper schedule) | x SFT run |", "|---|---|"]
    lines += [f"| {name[:-len('_over_sft')]} | {value:.2f} |" for name, value in whole.items()]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = torch.cuda.is_available()
    parser.add_argument("--model", default="tiny", choices=sorted(MODEL_SHAPES))
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--tokenizer", default=str(REPO_ROOT.parent / "shared" / "tokenizers" / "qwen3"))
    parser.add_argument("--device", default="cuda" if on_gpu else "cpu")
    parser.add_argument("--dtype", default="bfloat16" if on_gpu else "float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=4 if on_gpu else 2)
    parser.add_argument("--n-batches", type=int, default=2, help="distinct batches, cycled")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3 if not on_gpu else 5)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--lambda-distill", type=float, default=0.5)
    parser.add_argument("--alignment", default="seed", choices=["seed", "predict"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--variants", default="sft,reference,ours,ours_cached,ours_grouped,fixed,fixed_reuse,onpolicy")
    parser.add_argument("--gen-tokens", type=int, default=128,
                        help="onpolicy: new tokens sampled per row (generation.max_new_tokens)")
    parser.add_argument("--length-sample", type=int, default=256,
                        help="examples tokenized for the padding statistics")
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads per CPU worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--in-process", action="store_true",
                        help="run every variant in this process (quick checks; peak memory is not per variant)")
    parser.add_argument("--flops-only", action="store_true",
                        help="print the FLOP model for the shape and batches; time nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batches-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.variants.split(","):
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    if "sft" not in args.variants.split(","):
        parser.error("--variants must include sft (every ratio is to SFT)")
    return args


def main(argv=None, memory: PeakMemory | None = None) -> dict | None:
    """`memory`: a peak counter for --in-process runs (tests inject one); default PeakMemory."""
    args = parse_args(argv)
    if args.worker:
        data = torch.load(args.batches_file, weights_only=False)
        result = run_variant(args, args.worker, data)
        Path(args.result_file).write_text(json.dumps(result))
        return None

    print(f"tokenizing GSM8K ({args.data}) with {args.tokenizer} ...", flush=True)
    try:
        data = build_batches(args)
    except ResourceError as error:
        raise SystemExit(f"error: {error}") from None
    print("lengths:", json.dumps(data["lengths"]), flush=True)
    config = qwen3_config(args.model, args.attn)
    fixed_batches = data.get("fixed_batches") or [None] * len(data["batches"])
    per_batch = [ideal_flops(config, batch, args.gradient_checkpointing, fixed, len(data.get("shot_prefix_ids", ())))
                 for batch, fixed in zip(data["batches"], fixed_batches)]
    flops = {name: statistics.mean(f[name] for f in per_batch) for name in per_batch[0]}
    batch_size = data["batches"][0]["student_input_ids"].size(0)
    flops_whole = whole_run_flops(flops, batch_size, data["n_unique"])
    if args.flops_only:
        print(format_flops(flops, flops_whole))
        report = {"ideal_flops": flops, "whole_run_flops": flops_whole, "lengths": data["lengths"],
                  "machine": machine_info(args.device), "args": public_args(args)}
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return report
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        batches_file = Path(tmp) / "batches.pt"
        torch.save(data, batches_file)
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
        for variant in args.variants.split(","):
            result_file = Path(tmp) / f"{variant}.json"
            command = [sys.executable, "-m", "fewshot_distill.bench.step_bench", *passthrough, "--worker", variant,
                       "--batches-file", str(batches_file), "--result-file", str(result_file)]
            started = time.perf_counter()
            if args.in_process:  # quick checks: no per-variant process, so peak RSS is shared
                results[variant] = run_variant(args, variant, data, memory)
            else:
                subprocess.run(command, check=True, cwd=REPO_ROOT)
                results[variant] = json.loads(result_file.read_text())
            # CPU timings on a shared machine depend on other load: keep it beside each result.
            results[variant]["load_average_1min_after"] = os.getloadavg()[0]
            print(f"{variant}: median {results[variant]['median_step_s']:.3f} s/step "
                  f"({time.perf_counter() - started:.0f} s in process)", flush=True)

    whole = whole_run(results, batch_size, data["n_unique"])
    print(format_table(results, flops, whole))
    print(format_flops(flops, flops_whole))
    report = {**{name: {k: r[k] for k in ("median_step_s", "peak_mem_bytes", "tokens_per_s")}
                 for name, r in results.items()},
              "details": results, "ideal_flops": flops, "whole_run": whole, "whole_run_flops": flops_whole,
              "lengths": data["lengths"], "machine": machine_info(args.device), "args": public_args(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
