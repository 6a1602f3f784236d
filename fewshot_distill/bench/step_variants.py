"""The step benchmark's variants, one table (`VARIANTS`), and the worker that times one: built models, warm-up +
repeats, peak memory, the on-policy step's split into generation, teacher and student.

A new variant is one `Variant` row: what it times (`step`), on which batches, with which teacher; `run_variant`
reads the row, never the name."""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fewshot_distill.bench.step_data import qwen3_config
from fewshot_distill.losses.alignment import student_answer_window



@dataclass(frozen=True)
class Variant:
    description: str
    step: str                        # sft | reference | distill | distill_cached | onpolicy | onpolicy_step
    batches: str = "batches"         # which batch list of the bench data it times
    teacher: str = "adapter_disabled"  # adapter_disabled | shot_prefix (the prefix computed once per process)
    times_teacher: bool = False      # also time the teacher's top-K alone
    sampling: tuple[str, str] | None = None  # onpolicy_step: (who samples: hf | merged | adapter, micro | step)


VARIANTS: dict[str, Variant] = {
    "sft": Variant("student forward + backward (fewshot_distill/methods/sft.py sft_loss_step)", "sft"),
    "reference": Variant("separate frozen teacher copy, full logits over whole sequences, top-K, CE + MSE",
                         "reference"),
    "ours": Variant("distillation_loss_step + AdapterDisabledTeacher (answer positions only, answer-window student "
                    "logits, chunked CE); also times the teacher alone", "distill", times_teacher=True),
    "ours_cached": Variant("the same step with the teacher cache: a miss step (empty cache) and a hit step",
                           "distill_cached"),
    "ours_grouped": Variant("`ours` on the same examples regrouped by teacher length (fewshot_distill/data/"
                            "sampling.py)", "distill", batches="grouped_batches"),
    "fixed": Variant("`ours` on the same examples with one fixed set of shots for all (data.shot_sampling=fixed)",
                     "distill", batches="fixed_batches", times_teacher=True),
    "fixed_reuse": Variant("`fixed` with distillation.reuse_shot_prefix: the shot prefix's keys/values computed "
                           "once, the teacher runs only each [question][answer] suffix", "distill",
                           batches="fixed_batches", teacher="shot_prefix", times_teacher=True),
    "onpolicy": Variant("the on-policy step (method onpolicy, reverse KL): the student samples --gen-tokens new "
                        "tokens per row (random weights rarely emit EOS: the worst case), the teacher scores them, "
                        "the student trains on them; split into generation, teacher and student", "onpolicy"),
    "onpolicy_hf_micro": Variant("one on-policy optimizer step over --n-batches micro-batches, per micro-batch: "
                                 "transformers samples once per micro-batch", "onpolicy_step",
                                 sampling=("hf", "micro")),
    "onpolicy_hf_step": Variant("the same, transformers samples once per optimizer step", "onpolicy_step",
                                sampling=("hf", "step")),
    "onpolicy_vllm_merged": Variant("the same, the in-process vLLM engine samples once per step, its weights "
                                    "synced by loading W + s*BA (the sync counts as generation)", "onpolicy_step",
                                    sampling=("merged", "step")),
    "onpolicy_vllm_adapter": Variant("the same, the engine's adapter synced as a new LoRA request",
                                     "onpolicy_step", sampling=("adapter", "step")),
}
# One optimizer step of on-policy training: who samples, and how often (fewshot_distill/methods/onpolicy.py).
ONPOLICY_STEP_VARIANTS = {name: v.sampling for name, v in VARIANTS.items() if v.step == "onpolicy_step"}


def variants_help() -> str:
    """The table as the CLI's --help lists it."""
    return "variants:\n" + "\n".join(f"  {name:<22}{v.description}" for name, v in VARIANTS.items())


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
    spec = VARIANTS[variant]
    batches = data.get(spec.batches) or data["batches"]
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    peft_model, teacher_copy = build_models(args, device, with_teacher_copy=spec.step == "reference")
    # The student as training holds it (fewshot_distill/training/loop.py): prepared by accelerate, its forward
    # without the float32 output conversion, every forward under accelerator.autocast(). So the
    # window logits have training's dtype and the measured memory is training's.
    accelerator = Accelerator(mixed_precision="bf16" if args.dtype == "bfloat16" else "no",
                              cpu=device.type == "cpu")
    student = accelerator.prepare_model(AnswerWindowLM(peft_model))
    keep_low_precision_outputs(accelerator, student)
    autocast = accelerator.autocast
    shot_prefix = SharedPrefixTeacher(student, data["shot_prefix_ids"]) if spec.teacher == "shot_prefix" else None
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
    if spec.step == "onpolicy_step":
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
    elif spec.step == "onpolicy":
        step, splits = onpolicy_step_timer(args, student, peft_model, online, autocast, backward, device)
        times, peak = _time_steps(step, batches, args.warmup, args.repeats, device, memory)
        timed_splits = splits[len(splits) - len(times):]  # the warm-up steps' splits are dropped
        for part in ("generation", "teacher", "student"):
            result[f"{part}_step_s"] = statistics.median(split[f"{part}_s"] for split in timed_splits)
        result["sample_len"] = statistics.median(split["sample_len"] for split in timed_splits)
        result["gen_tokens"] = args.gen_tokens
    elif spec.step in ("sft", "reference", "distill"):
        step = {"sft": sft, "reference": reference}.get(spec.step) or ours_with(online)
        # The training step's peak is read right after its timed steps: the teacher-only timing and
        # the prefix comparison below are no-grad passes and must not replace it.
        times, peak = _time_steps(step, batches, args.warmup, args.repeats, device, memory)
        if spec.times_teacher:
            result["teacher_step_s"] = statistics.median(
                _time_steps(teacher_only, batches, 1, args.repeats, device)[0])
        if shot_prefix is not None:
            result["shot_prefix_stats"] = shot_prefix.stats()
            # Both alignments, every real answer position of the bench batches.
            result["prefix_vs_full_teacher"] = compare_with_full_teacher(
                shot_prefix, batches, args.k, autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None)
    elif spec.step == "distill_cached":  # alternate an empty-cache (miss) step and a full-cache (hit) step
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
    else:
        raise ValueError(f"variant {variant}: unknown step kind {spec.step!r}")
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
