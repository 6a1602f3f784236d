"""One loss step per method. Each returns the total loss (with a graph) and its terms, detached.

`student` is the (possibly DDP-wrapped) `AnswerWindowLM`; `teacher_top_k` gives the teacher's
top-K logits for a batch (online: the same weights with the adapter disabled, under no_grad; or a
cache of those, see src/training/teacher_cache.py): (values [B, A, K], ids [B, A, K]), plus the
teacher's tail log-sum-exp [B, A] when the loss uses the tail bucket (`src.losses`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from src import distillation as D
from src import losses as L
from src.models.prefix_teacher import SharedPrefixTeacher
from src.models.student import AnswerWindowLM, teacher_logits

TeacherTopK = Callable[[dict, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]


def sft_loss_step(student, batch: dict) -> dict[str, torch.Tensor]:
    """Plain LoRA SFT: token-mean CE over the answer tokens."""
    window_positions, answer_mask, answer_ids = D.student_answer_window(batch["student_labels"])
    window_logits = student(batch["student_input_ids"], batch["student_attention_mask"], window_positions)
    ce_loss, _ = D.answer_window_losses(window_logits, *targets_on_window(answer_ids, answer_mask))
    return {"loss": ce_loss, "ce_loss": ce_loss.detach()}


def targets_on_window(answer_ids: torch.Tensor, answer_mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """CE targets placed on the window: row j < A predicts answer token j, row A predicts nothing.

    [B, A] x2 -> [B, A + 1] x2. The losses run on the whole window with padded targets instead of a
    slice of it: a slice's backward allocates one more window-sized gradient buffer.
    """
    return (F.pad(answer_ids, (0, 1), value=D.IGNORE_INDEX), F.pad(answer_mask, (0, 1), value=False))


def online_teacher_top_k(teacher: AnswerWindowLM, k: int, alignment: str, *,
                         tail_temperature: float | None = None,
                         shot_prefix: SharedPrefixTeacher | None = None) -> TeacherTopK:
    """Teacher top-K at the answer positions, computed online from the adapter-disabled model.

    With `tail_temperature` (topk_tail=bucket) it also returns the log-sum-exp of the other ids'
    logits / T, taken from the full-vocabulary logits before they are dropped. With `shot_prefix`
    (fixed shots, distillation.reuse_shot_prefix) the teacher reads each row's suffix on the cached
    shot prefix instead of the whole sequence; the batch is unchanged.
    """
    compute_logits = shot_prefix.logits if shot_prefix is not None else partial(teacher_logits, teacher)

    def top_k(batch: dict, answer_ids: torch.Tensor, answer_mask: torch.Tensor):
        teacher_lengths = batch["teacher_attention_mask"].sum(dim=1)
        D.check_aligned_token_ids(batch["teacher_input_ids"], teacher_lengths, answer_ids, answer_mask,
                                  batch.get("example_index"))
        positions = D.teacher_answer_positions(teacher_lengths, answer_mask.sum(dim=1),
                                               answer_ids.size(1), alignment)
        logits = compute_logits(batch["teacher_input_ids"], batch["teacher_attention_mask"],
                                positions)  # no_grad, adapter disabled
        values, ids = D.top_k_logits(logits, k)
        if tail_temperature is None:
            return values, ids
        return values, ids, L.tail_logsumexp(logits, ids, tail_temperature)

    return top_k


def distillation_loss_step(student, batch: dict, teacher_top_k: TeacherTopK, lambda_distill: float,
                           alignment: str, loss: L.LossSpec = D.MSE) -> dict[str, torch.Tensor]:
    """CE + lambda * distillation loss (`loss`; the paper's: MSE of teacher top-K logits and student
    logits at the same vocabulary ids). The distillation term is logged as `dist_loss` for every loss."""
    window_positions, answer_mask, answer_ids = D.student_answer_window(batch["student_labels"])
    # Teacher first: its transient activations and logits are freed before the student's graph
    # exists, so they do not add to the step's peak memory.
    teacher_values, teacher_ids, *teacher_tail = teacher_top_k(batch, answer_ids, answer_mask)
    window_logits = student(batch["student_input_ids"], batch["student_attention_mask"], window_positions)

    # seed: the logits at the positions holding the answer tokens (window[1:]); predict: the CE
    # positions (window[:-1]). The teacher's ids, values and mask are padded onto the whole window.
    shift = 1 if alignment == "seed" else 0
    ce_loss, dist_loss = D.answer_window_losses(
        window_logits, *targets_on_window(answer_ids, answer_mask),
        teacher_ids=F.pad(teacher_ids, (0, 0, shift, 1 - shift)),
        teacher_values=F.pad(teacher_values, (0, 0, shift, 1 - shift)),
        distill_mask=F.pad(answer_mask, (shift, 1 - shift), value=False), loss=loss,
        teacher_tail=F.pad(teacher_tail[0], (shift, 1 - shift)) if teacher_tail else None)

    total = D.distillation_loss(ce_loss, dist_loss, lambda_distill)
    return {"loss": total, "ce_loss": ce_loss.detach(), "dist_loss": dist_loss.detach()}
