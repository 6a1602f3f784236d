"""The paper's method: SFT + few-shot logit distillation on the gold answer.

Teacher: the same base model, frozen (the adapter disabled; model.finetune=full: a frozen copy of the
starting weights), reading [8 shots][question][answer]. Student: base model + LoRA reading [question][answer].
Loss: CE(student) + lambda_distill * MSE(teacher top-K logits, student logits at the same vocab ids), at every
answer token; `distillation.loss` swaps the MSE for a KL-family divergence (fewshot_distill/losses/divergences.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fewshot_distill.losses.alignment import student_answer_window, targets_on_window, teacher_on_window
from fewshot_distill.losses.divergences import MSE, LossSpec
from fewshot_distill.losses.window_kernel import answer_window_losses
from fewshot_distill.methods.base import Method
from fewshot_distill.teachers import Teacher, build_teacher


def answer_losses(student, batch: dict, teacher: Teacher, alignment: str, loss: LossSpec = MSE,
                  ce_rows: torch.Tensor | None = None, distill_rows: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE, distillation term) over the answer tokens of `batch`: the teacher's pass (no_grad), then the
    student's. `ce_rows` / `distill_rows` [B] bool restrict a term to some rows (on-policy: no CE on
    sampled answers, nothing on an empty sample); None = every row."""
    window_positions, answer_mask, answer_ids = student_answer_window(batch["student_labels"])
    # Teacher first: its transient activations and logits are freed before the student's graph
    # exists, so they do not add to the step's peak memory.
    teacher_values, teacher_ids, *teacher_tail = teacher.top_k(batch, answer_ids, answer_mask)  # no_grad
    window_logits = student(batch["student_input_ids"], batch["student_attention_mask"], window_positions)

    ce_mask = answer_mask if ce_rows is None else answer_mask & ce_rows[:, None]
    distill_mask = answer_mask if distill_rows is None else answer_mask & distill_rows[:, None]
    teacher_ids, teacher_values, distill_mask, *teacher_tail = teacher_on_window(
        alignment, teacher_ids, teacher_values, distill_mask, *teacher_tail)
    return answer_window_losses(window_logits, *targets_on_window(answer_ids, ce_mask), teacher_ids=teacher_ids,
                                teacher_values=teacher_values, distill_mask=distill_mask, loss=loss,
                                teacher_tail=teacher_tail[0] if teacher_tail else None)


def distillation_loss_step(student, batch: dict, teacher: Teacher, lambda_distill: float, alignment: str,
                           loss: LossSpec = MSE) -> dict[str, torch.Tensor]:
    """CE + lambda * distillation term (`loss`; the paper's: MSE of teacher top-K logits and student logits
    at the same vocabulary ids), logged as ce_loss and dist_loss whatever the divergence."""
    ce_loss, dist_loss = answer_losses(student, batch, teacher, alignment, loss)
    total = ce_loss + lambda_distill * dist_loss
    return {"loss": total, "ce_loss": ce_loss.detach(), "dist_loss": dist_loss.detach()}


@dataclass
class DistillationStep:
    """`distillation_loss_step` bound to the run's teacher and settings: the method's loss step."""

    teacher: Teacher
    lambda_distill: float
    alignment: str
    loss: LossSpec = MSE

    def __call__(self, student, batch: dict) -> dict[str, torch.Tensor]:
        return distillation_loss_step(student, batch, self.teacher, self.lambda_distill, self.alignment, self.loss)


def build_loss_step(cfg, run) -> DistillationStep:
    dist_cfg = cfg.distillation
    return DistillationStep(build_teacher(cfg, run), dist_cfg.lambda_distill, dist_cfg.alignment,
                            LossSpec.from_config(dist_cfg))


METHOD = Method(
    name="online_v1", summary="SFT + few-shot distillation: CE + lambda x top-K MSE to the 8-shot teacher (the paper's)",
    build_loss_step=build_loss_step, answer_source="gold", with_teacher=True, needs_top_k=True, uses_ce=True,
    conditions={("fewshot", "lora"): "online_v1", ("zeroshot", "lora"): "online_zeroshot",
                ("shuffled_answers", "lora"): "online_shuffled", ("fewshot", "full"): "online_v1_full",
                ("zeroshot", "full"): "online_zeroshot_full"},
    unlisted_condition="online_{context}")
