"""On-policy distillation: the student samples its own answers each step and the teacher scores them.

Two methods share this file (the registry holds both):
  onpolicy        every row's answer is the student's own sample from [question] (adapter on, eval mode, no
                  grad; `generation.*`), and the loss is `distillation.loss` over the sampled tokens only, no
                  CE (a sample is not a target to imitate). Reverse KL, KL(student || teacher) on the
                  teacher's top-K ids, is the documented on-policy choice (GKD, Agarwal et al. 2024; Thinking
                  Machines' on-policy distillation; SDFT and OPSD score student samples the same way).
  onpolicy_mixed  round(student_fraction x B) rows of each micro-batch are sampled (a seeded choice), the
                  others keep the gold answer (GKD's lambda); CE on the gold rows only, the distillation term
                  on every row.
The loss is CE(gold rows) + lambda_distill * distillation term, so `onpolicy` is lambda x the divergence.

The teacher reads its own prompt ids followed by the sampled ids (`assemble_batch`, never re-tokenized
text), so the answers line up by construction; `Teacher.top_k` still checks it per batch. Sampling, its
seeds and samples.jsonl: fewshot_distill/training/sampling.py.

A sample that reaches generation.max_new_tokens without EOS is kept (train/sample_eos_frac counts the
others). A sample with no token before its EOS is empty: the row keeps that EOS so the batch stays
rectangular, but it is masked out of every loss and counted (train/empty_samples).
Logged beside the loss terms (means over micro-batches): train/sample_len (tokens per sample, EOS
included), train/sample_eos_frac, train/gen_seconds (generation time per micro-batch: a step's one
call, weight sync included, is counted on its first micro-batch), train/empty_samples (per micro-batch);
train/tokens_per_s counts the batch with the samples (the tokens trained on), not the gold batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from fewshot_distill.config import Config, ConfigError
from fewshot_distill.data.examples import assemble_batch, batch_prompts
from fewshot_distill.losses.divergences import LossSpec
from fewshot_distill.methods.base import Method
from fewshot_distill.methods.distill import answer_losses
from fewshot_distill.models.generation import GeneratedTokens
from fewshot_distill.teachers import Teacher, build_teacher
from fewshot_distill.training.loop import TRAINED_TOKENS, launched_with_fsdp
from fewshot_distill.training.sampling import (SampleSettings, StudentSampler, answers_from_samples, gold_answers,
                                               sampled_rows)

logger = logging.getLogger("fewshot_distill")


def onpolicy_loss_step(student, batch: dict, teacher: Teacher, sampler: StudentSampler, answer_source: str,
                       lambda_distill: float, alignment: str, loss: LossSpec, student_fraction: float = 0.5,
                       pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Sample (all or some rows), re-assemble the batch with the samples, then CE on gold rows +
    lambda * distillation term on every non-empty row. Returns the loss terms and the sample stats."""
    device = batch["student_input_ids"].device
    example_index = batch["example_index"].tolist()
    student_prompts, teacher_prompts = batch_prompts(batch)
    answers = gold_answers(batch)
    chosen = sampled_rows(len(answers), answer_source, student_fraction, sampler.settings.seed,
                          sampler.step, example_index)
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
    total = ce_loss + lambda_distill * dist_loss
    lengths = [len(ids) for ids in samples.token_ids]
    stats = torch.tensor([sum(lengths) / max(len(lengths), 1),
                          sum(samples.ended_with_eos) / max(len(lengths), 1), gen_seconds, float(sum(empty))],
                         dtype=torch.float64)
    return {"loss": total, "ce_loss": ce_loss.detach(), "dist_loss": dist_loss.detach(),
            "sample_len": stats[0], "sample_eos_frac": stats[1], "gen_seconds": stats[2],
            "empty_samples": stats[3], TRAINED_TOKENS: onpolicy_batch["student_attention_mask"].sum()}


@dataclass
class OnPolicyStep:
    """`onpolicy_loss_step` bound to the run's teacher, sampler and settings: the methods' loss step."""

    teacher: Teacher
    sampler: StudentSampler
    answer_source: str
    lambda_distill: float
    alignment: str
    loss: LossSpec
    student_fraction: float = 0.5
    pad_token_id: int = 0

    def begin_optimizer_step(self, batches: Sequence[dict]) -> None:
        """The loop's call with each optimizer step's micro-batches before their first forward: one
        sampling call for the whole step."""
        self.sampler.sample_step(batches, self.answer_source, self.student_fraction)

    def __call__(self, student, batch: dict) -> dict[str, torch.Tensor]:
        return onpolicy_loss_step(student, batch, self.teacher, self.sampler, self.answer_source, self.lambda_distill,
                                  self.alignment, self.loss, self.student_fraction, self.pad_token_id)


def check_onpolicy_config(cfg: Config) -> None:
    dist_cfg = cfg.distillation
    if dist_cfg.teacher_cache != "none":
        raise ConfigError(f"distillation.teacher_cache={dist_cfg.teacher_cache} needs gold answers: on-policy "
                          "samples are new every step; set distillation.teacher_cache=none")
    if launched_with_fsdp():
        # Sampling calls the inner causal LM, outside the sharded root's forward that gathers the shards,
        # and each rank's decode loop stops at its own EOS, so the ranks would issue different all-gathers.
        raise ConfigError("on-policy sampling (methods onpolicy, onpolicy_mixed) is not supported under FSDP: launch full "
                          "fine-tuning without the FSDP config (DDP), or use model.finetune=lora under DDP")


def build_loss_step(cfg, run, answer_source: str) -> OnPolicyStep:
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
                "sampled by %s once per optimizer step", answer_source, dist_cfg.teacher_weights,
                dist_cfg.loss, gen_cfg.max_new_tokens, sorted(sampler.eos_ids), gen_cfg.backend)
    return OnPolicyStep(teacher, sampler, answer_source, dist_cfg.lambda_distill, dist_cfg.alignment,
                        LossSpec.from_config(dist_cfg), dist_cfg.student_fraction, run.tokenizer.pad_token_id)


METHOD = Method(
    name="onpolicy", summary="on-policy distillation: the student's samples scored by the teacher, no CE",
    build_loss_step=lambda cfg, run: build_loss_step(cfg, run, "student"), answer_source="student",
    with_teacher=True, needs_top_k=True, uses_ce=False,
    conditions={("fewshot", "lora"): "onpolicy", ("zeroshot", "lora"): "onpolicy_zeroshot",
                ("shuffled_answers", "lora"): "onpolicy_shuffled"},
    unlisted_condition="onpolicy_{context}", check=check_onpolicy_config)

MIXED_METHOD = Method(
    name="onpolicy_mixed", summary="a student_fraction of each batch sampled, the rest gold; CE on gold rows (GKD)",
    build_loss_step=lambda cfg, run: build_loss_step(cfg, run, "mixed"), answer_source="mixed",
    with_teacher=True, needs_top_k=True, uses_ce=True, conditions={("fewshot", "lora"): "onpolicy_mixed"},
    unlisted_condition="onpolicy_mixed_{context}", check=check_onpolicy_config)
