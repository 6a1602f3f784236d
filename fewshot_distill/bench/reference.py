"""The paper-style distillation step, written the straightforward way, as the benchmark's reference.

A SEPARATE frozen teacher copy of the model runs over the whole few-shot sequence and returns
full-vocabulary logits [B, Tt, V]; the student returns full logits [B, Ts, V]; the answer positions
are picked per row, then top-K, then CE + lambda * MSE. Deliberately independent of
fewshot_distill/losses/window_kernel.py so tests can check that our optimised step gives the same loss values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_distill.constants import IGNORE_INDEX


def reference_distillation_losses(teacher_model, student_model, batch: dict, k: int, lambda_distill: float,
                                  alignment: str = "seed") -> dict[str, torch.Tensor]:
    """teacher_model / student_model: causal LMs called as model(input_ids=, attention_mask=).logits."""
    if alignment not in ("seed", "predict"):
        raise ValueError(f"alignment must be 'seed' or 'predict', got {alignment!r}")
    with torch.no_grad():
        teacher_full = teacher_model(input_ids=batch["teacher_input_ids"],
                                     attention_mask=batch["teacher_attention_mask"]).logits
    student_full = student_model(input_ids=batch["student_input_ids"],
                                 attention_mask=batch["student_attention_mask"]).logits
    labels = batch["student_labels"]
    vocab = student_full.size(-1)
    ce_loss = F.cross_entropy(student_full[:, :-1].reshape(-1, vocab).float(), labels[:, 1:].reshape(-1),
                              ignore_index=IGNORE_INDEX)

    squared_errors = []
    teacher_lengths = batch["teacher_attention_mask"].sum(dim=1).tolist()
    shift = 1 if alignment == "predict" else 0
    for row in range(labels.size(0)):
        student_positions = (labels[row] != IGNORE_INDEX).nonzero().flatten()
        n_answer = student_positions.numel()
        teacher_positions = torch.arange(teacher_lengths[row] - n_answer, teacher_lengths[row],
                                         device=labels.device) - shift
        top_values, top_ids = teacher_full[row, teacher_positions].topk(k, dim=-1)
        student_values = student_full[row, student_positions - shift].gather(-1, top_ids)
        squared_errors.append((student_values.float() - top_values.float()).pow(2).mean(dim=-1))
    dist_loss = torch.cat(squared_errors).mean()
    loss = ce_loss + lambda_distill * dist_loss
    return {"loss": loss, "ce_loss": ce_loss.detach(), "dist_loss": dist_loss.detach()}
