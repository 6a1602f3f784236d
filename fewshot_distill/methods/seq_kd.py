"""Sequence-level KD (Kim & Rush, 2016): SFT on the few-shot teacher's own greedy answers.

The teacher (the frozen base model reading its teacher context, [8 shots][question] by default) writes
each example's answer once, greedily, the first time the example is drawn; the student trains with CE on
[question][teacher's answer]. No logits are compared, so distillation.n_top_logits and lambda_distill do
not apply. Answers are memoised per example (greedy decoding of frozen weights: the same every epoch).
Logged: train/teacher_answer_len (tokens, EOS included) and train/gen_seconds (per micro-batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from fewshot_distill.config import Config, ConfigError
from fewshot_distill.data.examples import assemble_batch, batch_prompts
from fewshot_distill.methods.base import Method
from fewshot_distill.methods.sft import sft_loss_step
from fewshot_distill.models.generation import eos_token_ids, generate_tokens
from fewshot_distill.models.student import AnswerWindowLM, adapter_disabled
from fewshot_distill.teachers import base_teacher_model
from fewshot_distill.training.loop import TRAINED_TOKENS, launched_with_fsdp


@dataclass
class TeacherAnswerStep:
    """CE on the teacher's greedy answers, written on first use of each example."""

    teacher_lm: AnswerWindowLM          # the frozen base weights (adapter disabled inside `teacher_answers`)
    eos_ids: set[int]
    pad_token_id: int
    max_new_tokens: int
    answers: dict[int, list[int]] = field(default_factory=dict)   # example index -> the teacher's answer ids

    def teacher_answers(self, teacher_prompts: list[list[int]], example_index: list[int]) -> list[list[int]]:
        missing = [row for row, index in enumerate(example_index) if index not in self.answers]
        if missing:
            lm = self.teacher_lm
            was_training = lm.training
            lm.eval()  # no dropout: the teacher's own greedy answer
            try:
                with adapter_disabled(lm):
                    written = generate_tokens(lm.wrapped_model, [teacher_prompts[row] for row in missing],
                                              max_new_tokens=self.max_new_tokens, eos_ids=self.eos_ids,
                                              pad_token_id=self.pad_token_id,
                                              device=next(lm.parameters()).device)
            finally:
                lm.train(was_training)
            for row, ids in zip(missing, written.token_ids):
                self.answers[example_index[row]] = list(ids) or [min(self.eos_ids)]
        return [self.answers[index] for index in example_index]

    def __call__(self, student, batch: dict) -> dict[str, torch.Tensor]:
        example_index = batch["example_index"].tolist()
        student_prompts, teacher_prompts = batch_prompts(batch)
        started = time.perf_counter()
        answers = self.teacher_answers(teacher_prompts, example_index)
        gen_seconds = time.perf_counter() - started
        device = batch["student_input_ids"].device
        teacher_batch = {name: value.to(device) for name, value in assemble_batch(
            student_prompts, answers, example_index, self.pad_token_id).items()}
        terms = sft_loss_step(student, teacher_batch)
        stats = torch.tensor([sum(map(len, answers)) / len(answers), gen_seconds], dtype=torch.float64)
        return {**terms, "teacher_answer_len": stats[0], "gen_seconds": stats[1],
                TRAINED_TOKENS: teacher_batch["student_attention_mask"].sum()}


def check_seq_kd_config(cfg: Config) -> None:
    if launched_with_fsdp():
        # Greedy decoding calls the causal LM outside the sharded root's forward (as on-policy sampling does).
        raise ConfigError("method seq_kd is not supported under FSDP: launch without the FSDP config (DDP)")


def build_loss_step(cfg, run) -> TeacherAnswerStep:
    teacher_lm = base_teacher_model(cfg, run)
    return TeacherAnswerStep(teacher_lm, eos_token_ids(run.tokenizer, getattr(teacher_lm.causal_lm,
                                                                                 "generation_config", None)),
                             run.tokenizer.pad_token_id, cfg.generation.max_new_tokens)


METHOD = Method(
    name="seq_kd", summary="sequence-level KD: SFT on the few-shot teacher's greedy answers (Kim & Rush 2016)",
    build_loss_step=build_loss_step, answer_source="teacher", with_teacher=True, needs_top_k=False, uses_ce=True,
    conditions={("fewshot", "lora"): "seq_kd"}, unlisted_condition="seq_kd_{context}", check=check_seq_kd_config)
