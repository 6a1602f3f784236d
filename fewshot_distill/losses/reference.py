"""The readable, unfused losses: what `window_kernel.answer_window_losses` computes for mse, written the
obvious way (tests check the kernel against these; bench/bench_gpu.py times both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gather_vocab(logits: torch.Tensor, vocab_ids: torch.Tensor) -> torch.Tensor:
    """logits [B, A, V], vocab_ids [B, A, K] -> logits at those ids [B, A, K] float32."""
    return logits.gather(-1, vocab_ids).float()


def masked_mse(teacher_values: torch.Tensor, student_values: torch.Tensor, mask: torch.Tensor
               ) -> torch.Tensor:
    """Mean over the K entries, then masked mean over answer positions.  [B, A, K] x2, [B, A] -> scalar.

    An all-masked batch gives 0 (with a graph, so backward still works).
    """
    per_position = (student_values - teacher_values).pow(2).mean(dim=-1)
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp(min=1.0)


def masked_cross_entropy(logits: torch.Tensor, target_ids: torch.Tensor, mask: torch.Tensor,
                         chunk_size: int = 1024) -> torch.Tensor:
    """Token-mean CE over masked positions.  logits [B, A, V], target_ids / mask [B, A] -> scalar.

    Only the masked rows are upcast to float32, `chunk_size` rows at a time, so no float32 copy of
    the whole logits tensor is materialised.
    """
    flat_logits = logits[mask]
    flat_targets = target_ids[mask]
    if flat_targets.numel() == 0:
        return logits.sum() * 0.0
    total = logits.new_zeros((), dtype=torch.float32)
    for begin in range(0, flat_targets.numel(), chunk_size):
        chunk = flat_logits[begin: begin + chunk_size].float()
        total = total + F.cross_entropy(chunk, flat_targets[begin: begin + chunk_size], reduction="sum")
    return total / flat_targets.numel()
