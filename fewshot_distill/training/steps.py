"""One loss step per method. Each returns the total loss (with a graph) and its terms, detached.

`student` is the (possibly DDP-wrapped) `AnswerWindowLM`; `teacher` is a `Teacher`
(fewshot_distill/training/teacher.py: adapter disabled, shared shot prefix, cached, ...) whose `top_k` gives the
teacher's top-K logits at the answer positions, under no_grad: (values [B, A, K], ids [B, A, K]),
plus the teacher's tail log-sum-exp [B, A] when the loss uses the tail bucket (`fewshot_distill.losses`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_distill import distillation as D
from fewshot_distill import losses as L
from fewshot_distill.methods import METHODS
from fewshot_distill.training.teacher import Teacher


# A loss step that trains on other tokens than its batch's (on-policy: the sampled answers) returns their
# count under this key; the loop counts it into train/tokens_per_s instead of logging it as a term.
TRAINED_TOKENS = "trained_tokens"


def trained_tokens(terms: dict, batch: dict) -> int:
    """The tokens a loss step trained on: the count it reported (TRAINED_TOKENS), else its batch's student
    tokens (prompt and answer, no padding)."""
    reported = terms.get(TRAINED_TOKENS)
    return int(reported) if reported is not None else int(batch["student_attention_mask"].sum())


def loss_step_builder(method: str):
    """The `build_loss_step(cfg, run)` a method registers in fewshot_distill/methods.py (imported here, in the
    training layer: the registry itself sits below everything and only names it)."""
    import importlib

    if method not in METHODS:
        raise ValueError(f"Unknown training method {method!r}; expected one of {sorted(METHODS)}")
    module_name, function = METHODS[method].loss_step_builder.split(":")
    return getattr(importlib.import_module(module_name), function)


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


def distillation_loss_step(student, batch: dict, teacher: Teacher, lambda_distill: float,
                           alignment: str, loss: L.LossSpec = D.MSE) -> dict[str, torch.Tensor]:
    """CE + lambda * distillation loss (`loss`; the paper's: MSE of teacher top-K logits and student
    logits at the same vocabulary ids). The distillation term is logged as `dist_loss` for every loss."""
    ce_loss, dist_loss = answer_losses(student, batch, teacher, alignment, loss)
    total = D.distillation_loss(ce_loss, dist_loss, lambda_distill)
    return {"loss": total, "ce_loss": ce_loss.detach(), "dist_loss": dist_loss.detach()}


def answer_losses(student, batch: dict, teacher: Teacher, alignment: str, loss: L.LossSpec = D.MSE,
                  ce_rows: torch.Tensor | None = None, distill_rows: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE, distillation term) over the answer tokens of `batch`: the teacher's pass (no_grad), then the
    student's. `ce_rows` / `distill_rows` [B] bool restrict a term to some rows (on-policy: no CE on
    sampled answers, nothing on an empty sample); None = every row."""
    window_positions, answer_mask, answer_ids = D.student_answer_window(batch["student_labels"])
    # Teacher first: its transient activations and logits are freed before the student's graph
    # exists, so they do not add to the step's peak memory.
    teacher_values, teacher_ids, *teacher_tail = teacher.top_k(batch, answer_ids, answer_mask)  # no_grad
    window_logits = student(batch["student_input_ids"], batch["student_attention_mask"], window_positions)

    ce_mask = answer_mask if ce_rows is None else answer_mask & ce_rows[:, None]
    distill_mask = answer_mask if distill_rows is None else answer_mask & distill_rows[:, None]
    # seed: the logits at the positions holding the answer tokens (window[1:]); predict: the CE
    # positions (window[:-1]). The teacher's ids, values and mask are padded onto the whole window.
    shift = 1 if alignment == "seed" else 0
    return D.answer_window_losses(
        window_logits, *targets_on_window(answer_ids, ce_mask),
        teacher_ids=F.pad(teacher_ids, (0, 0, shift, 1 - shift)),
        teacher_values=F.pad(teacher_values, (0, 0, shift, 1 - shift)),
        distill_mask=F.pad(distill_mask, (shift, 1 - shift), value=False), loss=loss,
        teacher_tail=F.pad(teacher_tail[0], (shift, 1 - shift)) if teacher_tail else None)
