"""On-policy distillation: the student samples its own answers each step and the teacher scores them.

`distillation.answer_source` (the gold path is train_online_v1.py's `distillation_loss_step`):
  student  every row's answer is the student's own sample from [question] (adapter on, eval mode, no
           grad; `generation.*`), and the loss is `distillation.loss` over the sampled tokens only, no
           CE (a sample is not a target to imitate). Reverse KL, KL(student || teacher) on the
           teacher's top-K ids, is the documented on-policy choice (GKD, Agarwal et al. 2024; Thinking
           Machines' on-policy distillation; SDFT and OPSD score student samples the same way).
  mixed    round(student_fraction x B) rows of each micro-batch are sampled (a seeded choice), the
           others keep the gold answer (GKD's lambda); CE on the gold rows only, the distillation term
           on every row.
The loss is CE(gold rows) + lambda_distill * distillation term, so `student` is lambda x the divergence.

The teacher reads its own prompt ids followed by the sampled ids (`assemble_batch`, never re-tokenized
text), so the answers line up by construction; `Teacher.top_k` still checks it per batch.

Each row's sample is seeded by (training.seed, optimizer step, example index): it does not depend on
the rank, the batch it shares or the number of processes, and a resumed run draws the same samples.
So the loop (fewshot_distill/training/loop.py) lets each rank draw its whole optimizer-step share, every
accumulation micro-batch, in one sampling call before the step's first forward
(`begin_optimizer_step`): the same samples as one call per micro-batch, in fewer, larger batches.
`generation.backend` picks who samples: `hf` (generate_tokens on the trained model) or `vllm` (an
in-process engine whose weights follow the trainer's once per optimizer step: fewshot_distill/training/vllm_sampler.py).
A sample that reaches generation.max_new_tokens without EOS is kept (train/sample_eos_frac counts the
others). A sample with no token before its EOS is empty: the row keeps that EOS so the batch stays
rectangular, but it is masked out of every loss and counted (train/empty_samples).

Logged beside the loss terms (means over micro-batches): train/sample_len (tokens per sample, EOS
included), train/sample_eos_frac, train/gen_seconds (generation time per micro-batch: a step's one
call, weight sync included, is counted on its first micro-batch),
train/empty_samples (per micro-batch); train/tokens_per_s counts the batch with the samples (the tokens
trained on), not the gold batch. Every logging_steps optimizer steps (and at step 1) every
rank's samples of that step go to {output_dir}/samples.jsonl: step, example index, text, length, EOS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import torch

from fewshot_distill import distillation as D
from fewshot_distill.config import ConfigError
from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.data.gsm8k_loader import assemble_batch, batch_prompts
from fewshot_distill.losses import LossSpec
from fewshot_distill.models.generation import GeneratedTokens, eos_token_ids, generate_tokens
from fewshot_distill.training.steps import TRAINED_TOKENS, answer_losses
from fewshot_distill.training.teacher import Teacher
from fewshot_distill.utils.io import keep_logged_steps

logger = logging.getLogger("fewshot_distill")

SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class SampleSettings:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 42


def row_seed(seed: int, step: int, example_index: int) -> int:
    """The sampling seed of one example at one optimizer step (63 bits of a hash of the three)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{example_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def sampled_rows(n_rows: int, answer_source: str, student_fraction: float, seed: int, step: int,
                 example_index: Sequence[int]) -> list[bool]:
    """Which rows of a micro-batch get a student sample: all (student), round(fraction x n_rows) of them
    chosen by a permutation seeded on the step and the batch's first example (mixed), none (gold)."""
    if answer_source == "gold":
        return [False] * n_rows
    if answer_source == "student":
        return [True] * n_rows
    if answer_source != "mixed":
        raise ValueError(f"answer_source must be gold, student or mixed, got {answer_source!r}")
    n_sampled = int(student_fraction * n_rows + 0.5)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(
        row_seed(seed, step, int(example_index[0]) if len(example_index) else 0)))
    chosen = set(order[:n_sampled].tolist())
    return [row in chosen for row in range(n_rows)]


def answers_from_samples(samples: GeneratedTokens, eos_ids: set[int]) -> tuple[list[list[int]], list[bool]]:
    """The answer ids each sampled row reads, and whether it is empty (no token before its EOS).

    An empty sample keeps its EOS (or, with no token at all, one EOS id) so the batch stays rectangular;
    the caller masks it."""
    answers, empty = [], []
    for ids in samples.token_ids:
        content = [t for t in ids if t not in eos_ids]
        empty.append(not content)
        answers.append(list(ids) if ids else [min(eos_ids)])
    return answers, empty


def gold_answers(batch: dict) -> list[list[int]]:
    """Each row's gold answer ids, read back from its labels."""
    labels = batch["student_labels"]
    return [row[row != IGNORE_INDEX].tolist() for row in labels]


class StudentSampler:
    """Samples the student's answers (adapter on, eval mode, no grad) and writes samples.jsonl.

    `engine` None samples with generate_tokens on `model`; otherwise it is a vllm_sampler.VLLMSampleEngine
    that is synced to `model` before each optimizer step's sampling call."""

    def __init__(self, model, tokenizer, settings: SampleSettings, run=None, logging_steps: int = 1,
                 output_dir: Path | None = None, engine=None):
        self.model = model                   # the unwrapped peft model (generation needs no DDP)
        self.tokenizer = tokenizer
        self.settings = settings
        self.run = run                       # its `step` is the optimizer steps done (None: step 0)
        self.logging_steps = logging_steps
        self.samples_path = None if output_dir is None else Path(output_dir) / SAMPLES_FILE
        self.eos_ids = eos_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.engine = engine
        self._written_from: int | None = None
        self._synced_step: int | None = None
        # Samples drawn ahead by sample_step: example index -> (ids, ended with EOS), for step _drawn_step.
        self._drawn: dict[int, tuple[list[int], bool]] = {}
        self._drawn_step: int | None = None
        self._drawn_seconds = 0.0

    @property
    def step(self) -> int:
        """The optimizer step (1-based) the current micro-batch belongs to."""
        return (self.run.step if self.run is not None else 0) + 1

    def sample_step(self, batches: Sequence[dict], answer_source: str, student_fraction: float) -> None:
        """Draw every sampled row of this optimizer step's micro-batches in one call; `sample` then serves
        them. The rows are those `onpolicy_loss_step` picks, and each row's seed is the one it would use."""
        prompts, indices = [], []
        for batch in batches:
            example_index = batch["example_index"].tolist()
            student_prompts, _ = batch_prompts(batch)
            chosen = sampled_rows(len(example_index), answer_source, student_fraction, self.settings.seed,
                                  self.step, example_index)
            prompts += [p for p, c in zip(student_prompts, chosen) if c]
            indices += [i for i, c in zip(example_index, chosen) if c]
        started = time.perf_counter()
        samples = self.draw(prompts, indices) if prompts else GeneratedTokens([], [])
        self._drawn = {int(i): (ids, eos) for i, ids, eos in zip(indices, samples.token_ids,
                                                                   samples.ended_with_eos)}
        self._drawn_step = self.step
        self._drawn_seconds = time.perf_counter() - started

    def take_drawn_seconds(self) -> float:
        """The time of the step's sampling call, once (the first micro-batch counts it)."""
        seconds, self._drawn_seconds = self._drawn_seconds, 0.0
        return seconds

    def sample(self, prompts: Sequence[Sequence[int]], example_index: Sequence[int]) -> GeneratedTokens:
        """The rows' samples: those sample_step drew for this step, or drawn now."""
        if self._drawn_step == self.step and all(int(i) in self._drawn for i in example_index):
            drawn = [self._drawn[int(i)] for i in example_index]
            return GeneratedTokens([list(ids) for ids, _ in drawn], [eos for _, eos in drawn])
        return self.draw(prompts, example_index)

    def draw(self, prompts: Sequence[Sequence[int]], example_index: Sequence[int]) -> GeneratedTokens:
        """One sampling call: each row seeded by (seed, step, example index)."""
        if self.engine is not None:
            if self._synced_step != self.step:  # the trainer's weights move once per optimizer step
                self.engine.sync(self.model)
                self._synced_step = self.step
            seeds = [row_seed(self.settings.seed, self.step, int(i)) for i in example_index]
            return self.engine.generate(prompts, seeds, self.settings)
        settings, device = self.settings, next(self.model.parameters()).device
        generators = None
        if settings.temperature > 0:
            generators = [torch.Generator(device=device).manual_seed(row_seed(settings.seed, self.step, int(i)))
                          for i in example_index]
        was_training = self.model.training
        self.model.eval()  # no LoRA dropout: the sample is the student's own distribution
        try:
            return generate_tokens(self.model, prompts, max_new_tokens=settings.max_new_tokens,
                                   eos_ids=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id,
                                   temperature=settings.temperature, top_p=settings.top_p,
                                   generator=generators, device=device)
        finally:
            self.model.train(was_training)

    def record(self, samples: GeneratedTokens, example_index: Sequence[int], empty: Sequence[bool]) -> None:
        """Append this micro-batch's samples (every rank's) to samples.jsonl on a logged step."""
        step = self.step
        if self.samples_path is None or not (step == 1 or step % self.logging_steps == 0):
            return
        records = [{"step": step, "example_index": int(i), "length": len(ids), "eos": bool(eos),
                    "empty": bool(e), "text": self.tokenizer.decode(ids, skip_special_tokens=True)}
                   for i, ids, eos, e in zip(example_index, samples.token_ids, samples.ended_with_eos, empty)]
        import torch.distributed as dist

        main = True
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, records)
            records = [r for rank_records in gathered for r in rank_records]
            main = dist.get_rank() == 0
        if not main:
            return
        if self._written_from is None:  # a resumed run drops the lines of the steps it redoes
            self._written_from = step
            if self.samples_path.exists():
                keep_logged_steps(self.samples_path, step - 1)
        with self.samples_path.open("a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")


def onpolicy_loss_step(student, batch: dict, teacher: Teacher, sampler: StudentSampler, answer_source: str,
                       lambda_distill: float, alignment: str, loss: LossSpec, student_fraction: float = 0.5,
                       pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Sample (all or some rows), re-assemble the batch with the samples, then CE on gold rows +
    lambda * distillation term on every non-empty row. Returns the loss terms and the sample stats."""
    device = batch["student_input_ids"].device
    example_index = batch["example_index"].tolist()
    student_prompts, teacher_prompts = batch_prompts(batch)
    answers = gold_answers(batch)
    chosen = sampled_rows(len(answers), answer_source, student_fraction, sampler.settings.seed, sampler.step,
                          example_index)
    rows = [row for row, c in enumerate(chosen) if c]
    started = time.perf_counter()
    samples = (sampler.sample([student_prompts[row] for row in rows], [example_index[row] for row in rows])
               if rows else GeneratedTokens([], []))
    gen_seconds = time.perf_counter() - started + sampler.take_drawn_seconds()
    sampled_answers, empty = answers_from_samples(samples, sampler.eos_ids)
    for row, answer in zip(rows, sampled_answers):
        answers[row] = answer
    sampler.record(samples, [example_index[row] for row in rows], empty)

    onpolicy_batch = {name: value.to(device) for name, value in assemble_batch(
        student_prompts, answers, example_index, pad_token_id, teacher_prompts).items()}
    gold_row = torch.tensor([not c for c in chosen], device=device)
    distill_row = torch.ones(len(answers), dtype=torch.bool, device=device)
    for row, is_empty in zip(rows, empty):
        distill_row[row] = not is_empty
    ce_loss, dist_loss = answer_losses(student, onpolicy_batch, teacher, alignment, loss,
                                       ce_rows=gold_row, distill_rows=distill_row)
    # An all-gold-masked CE is an exact 0 (no gold rows): the total is then lambda x the divergence.
    total = D.distillation_loss(ce_loss, dist_loss, lambda_distill)
    lengths = [len(ids) for ids in samples.token_ids]
    stats = torch.tensor([sum(lengths) / max(len(lengths), 1),
                          sum(samples.ended_with_eos) / max(len(lengths), 1), gen_seconds, float(sum(empty))],
                         dtype=torch.float64)
    return {"loss": total, "ce_loss": ce_loss.detach(), "dist_loss": dist_loss.detach(),
            "sample_len": stats[0], "sample_eos_frac": stats[1], "gen_seconds": stats[2],
            "empty_samples": stats[3], TRAINED_TOKENS: onpolicy_batch["student_attention_mask"].sum()}


def build_loss_step(cfg, run):
    """The on-policy methods' loss step (registered in fewshot_distill/methods.py: onpolicy, onpolicy_mixed):
    a partial whose `.keywords["teacher"]` is the Teacher, as train_online_v1.py's."""
    from fewshot_distill.training.train_online_v1 import build_teacher, loss_spec

    dist_cfg, gen_cfg = cfg.distillation, cfg.generation
    if gen_cfg.backend == "vllm":  # refused before the teacher or an engine is built
        from fewshot_distill.training.vllm_sampler import vllm_problem

        problem = vllm_problem(cfg, run.accelerator.distributed_type)
        if problem is not None:
            raise ConfigError(problem)
    teacher = build_teacher(cfg, run)
    sampler = StudentSampler(run.trained_model, run.tokenizer,
                             SampleSettings(gen_cfg.max_new_tokens, gen_cfg.temperature, gen_cfg.top_p,
                                            cfg.training.seed),
                             run=run, logging_steps=cfg.training.logging_steps, output_dir=run.output_dir)
    if gen_cfg.backend == "vllm":
        from fewshot_distill.training.vllm_sampler import VLLMSampleEngine

        sampler.engine = VLLMSampleEngine.from_config(cfg, run, [len(e.student_prompt_ids) for e in run.examples],
                                                      sampler.eos_ids)
        logger.info("vLLM sampler engine started in %.1f s (weight sync: %s)", sampler.engine.startup_seconds,
                    gen_cfg.vllm_weight_sync if cfg.model.finetune == "lora" else "full weights")
    logger.info("on-policy: answer_source=%s, teacher_weights=%s, loss=%s, %d new tokens at most, eos ids %s, "
                "sampled by %s once per optimizer step", dist_cfg.answer_source, dist_cfg.teacher_weights,
                dist_cfg.loss, gen_cfg.max_new_tokens, sorted(sampler.eos_ids), gen_cfg.backend)
    step = partial(onpolicy_loss_step, teacher=teacher, sampler=sampler, answer_source=dist_cfg.answer_source,
                   lambda_distill=dist_cfg.lambda_distill, alignment=dist_cfg.alignment, loss=loss_spec(cfg),
                   student_fraction=dist_cfg.student_fraction, pad_token_id=run.tokenizer.pad_token_id)
    # The loop calls it with each optimizer step's micro-batches before their first forward.
    step.begin_optimizer_step = partial(sampler.sample_step, answer_source=dist_cfg.answer_source,
                                        student_fraction=dist_cfg.student_fraction)
    return step
