"""Alignment of teacher and student answer tokens, and the loss terms. Pure tensor functions.

Shapes: B = batch, T = sequence length, A = longest answer in the batch, V = vocabulary, K = top-K.

Both sequences are right-padded and end (before padding) with the same `n_answer` answer tokens:
student answer token j sits at `student_start + j`, teacher answer token j at
`teacher_len - n_answer + j`.

The student's logits are computed only on an "answer window" of A + 1 positions starting one before
the answer, `student_start - 1 + i` for i in [0, A]: window[:, :A] predicts answer token j (the CE
positions, also the `predict` alignment) and window[:, 1:] holds answer token j (the `seed`
alignment of the paper, which compares the logits at the positions holding the answer tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.data.prompts import AlignmentError

IGNORE_INDEX = -100
ALIGNMENTS = ("seed", "predict")


def answer_spans_from_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Start position and length of each row's supervised span.  labels [B, T] -> ([B], [B]).

    The span must be one contiguous run of non-ignored labels (the answer ends the real sequence).
    """
    supervised = labels != IGNORE_INDEX
    n_answer = supervised.sum(dim=1)
    if bool((n_answer == 0).any()):
        rows = (n_answer == 0).nonzero().flatten().tolist()
        raise AlignmentError(f"Batch rows {rows} have no supervised answer tokens")
    start = supervised.int().argmax(dim=1)
    last = labels.size(1) - 1 - supervised.flip(1).int().argmax(dim=1)
    if bool((last - start + 1 != n_answer).any()):
        raise AlignmentError("Supervised labels are not one contiguous span per row")
    return start, n_answer


def window_positions(start: torch.Tensor, n_positions: torch.Tensor, width: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions `start + i` for i < width, and mask i < n_positions.  -> ([B, width], [B, width]).

    Masked positions are clamped to `start` so they index a real token (their values are ignored).
    """
    offsets = torch.arange(width, device=start.device)
    mask = offsets[None, :] < n_positions[:, None]
    positions = torch.where(mask, start[:, None] + offsets[None, :], start[:, None])
    return positions, mask


def student_answer_window(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student positions to compute logits at, answer mask and answer token ids.

    labels [B, T] -> window positions [B, A + 1], answer mask [B, A], answer token ids [B, A]
    (ids are IGNORE_INDEX where masked).
    """
    start, n_answer = answer_spans_from_labels(labels)
    if bool((start < 1).any()):
        raise AlignmentError("An answer starts at position 0: the prompt is empty, nothing predicts it")
    width = int(n_answer.max())
    positions, _ = window_positions(start - 1, n_answer + 1, width + 1)
    answer_positions, answer_mask = window_positions(start, n_answer, width)
    answer_ids = labels.gather(1, answer_positions).masked_fill(~answer_mask, IGNORE_INDEX)
    return positions, answer_mask, answer_ids


def teacher_answer_positions(teacher_lengths: torch.Tensor, n_answer: torch.Tensor, width: int,
                             alignment: str = "seed") -> torch.Tensor:
    """Teacher positions whose logits match the student's (see module docstring).  -> [B, width].

    "seed": `teacher_len - n_answer + j` (holds answer token j); "predict": one position earlier.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    start = teacher_lengths - n_answer - (1 if alignment == "predict" else 0)
    positions, _ = window_positions(start, n_answer, width)
    return positions


def check_aligned_token_ids(teacher_input_ids: torch.Tensor, teacher_lengths: torch.Tensor,
                            answer_ids: torch.Tensor, answer_mask: torch.Tensor,
                            example_index: torch.Tensor | None = None) -> None:
    """Raise AlignmentError unless the teacher's last n_answer tokens equal the student's answer.

    teacher_input_ids [B, Tt], teacher_lengths [B], answer_ids / answer_mask [B, A].
    """
    n_answer = answer_mask.sum(dim=1)
    if bool((teacher_lengths < n_answer + 1).any()):
        raise AlignmentError("A teacher sequence is shorter than its student answer plus one prompt token")
    positions, _ = window_positions(teacher_lengths - n_answer, n_answer, answer_ids.size(1))
    teacher_answer_ids = teacher_input_ids.gather(1, positions)
    mismatched = ((teacher_answer_ids != answer_ids) & answer_mask).any(dim=1)
    if bool(mismatched.any()):
        rows = mismatched.nonzero().flatten().tolist()
        ids = rows if example_index is None else example_index[rows].tolist()
        raise AlignmentError(
            f"Teacher and student answer tokens differ for examples {ids}: the teacher sequence must "
            "end with exactly the student's answer tokens (check truncation, padding side and the "
            "tokenizer).")


def gather_positions(hidden_or_logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x [B, T, D], positions [B, P] -> x at those positions [B, P, D]."""
    index = positions.unsqueeze(-1).expand(-1, -1, hidden_or_logits.size(-1))
    return hidden_or_logits.gather(1, index)


def top_k_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, A, V] -> (values [B, A, K] float32, vocab ids [B, A, K])."""
    if k > logits.size(-1):
        raise ValueError(f"n_top_logits={k} exceeds the vocabulary size {logits.size(-1)}")
    values, ids = logits.topk(k, dim=-1)
    return values.float(), ids


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


def distillation_loss(ce_loss: torch.Tensor, dist_loss: torch.Tensor, lambda_distill: float
                      ) -> torch.Tensor:
    """The paper's objective: CE + lambda * MSE(teacher top-K, student at the same ids)."""
    return ce_loss + lambda_distill * dist_loss
