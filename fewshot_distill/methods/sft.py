"""LoRA SFT (the baseline): token-mean cross-entropy on the gold answer, no teacher."""

from __future__ import annotations

import torch

from fewshot_distill.losses.alignment import student_answer_window, targets_on_window
from fewshot_distill.losses.window_kernel import answer_window_losses
from fewshot_distill.methods.base import Method


def sft_loss_step(student, batch: dict) -> dict[str, torch.Tensor]:
    """CE over the answer tokens: the student's logits on the answer window only, the fused kernel without
    a teacher term."""
    window_positions, answer_mask, answer_ids = student_answer_window(batch["student_labels"])
    window_logits = student(batch["student_input_ids"], batch["student_attention_mask"], window_positions)
    ce_loss, _ = answer_window_losses(window_logits, *targets_on_window(answer_ids, answer_mask))
    return {"loss": ce_loss, "ce_loss": ce_loss.detach()}


def build_loss_step(cfg, run):
    return sft_loss_step


METHOD = Method(
    name="baseline", summary="SFT: CE on the gold answer, no teacher",
    build_loss_step=build_loss_step, answer_source="gold", with_teacher=False, needs_top_k=False, uses_ce=True,
    conditions={(None, "lora"): "baseline", (None, "full"): "baseline_full"})
