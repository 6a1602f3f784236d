"""Where the answer tokens sit: the student's answer window, the teacher's matching positions, and the
placement of the teacher's top-K onto the window. Pure tensor functions.

Shapes: B = batch, T = sequence length, A = longest answer in the batch, K = top-K.

Both sequences are right-padded and end (before padding) with the same `n_answer` answer tokens:
student answer token j sits at `student_start + j`, teacher answer token j at
`teacher_len - n_answer + j`.

The student's logits are computed only on an "answer window" of A + 1 positions starting one before
the answer, `student_start - 1 + i` for i in [0, A]: window[:, :A] predicts answer token j (the CE
positions, also the `predict` alignment) and window[:, 1:] holds answer token j (the `seed`
alignment of the paper, which compares the logits at the positions holding the answer tokens).
The losses run on the whole window (`fewshot_distill/losses/window_kernel.py`), so CE targets and the
teacher's top-K are padded onto its A + 1 rows (`targets_on_window`, `teacher_on_window`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.data.prompts import AlignmentError

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



def targets_on_window(answer_ids: torch.Tensor, answer_mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """CE targets placed on the window: row j < A predicts answer token j, row A predicts nothing.

    [B, A] x2 -> [B, A + 1] x2. The losses run on the whole window with padded targets instead of a
    slice of it: a slice's backward allocates one more window-sized gradient buffer.
    """
    return (F.pad(answer_ids, (0, 1), value=IGNORE_INDEX), F.pad(answer_mask, (0, 1), value=False))



def teacher_on_window(alignment: str, *answer_rows: torch.Tensor) -> list[torch.Tensor]:
    """The teacher's per-answer-token tensors ([B, A] or [B, A, K]) placed on the A + 1 window rows.

    seed: on window[1:] (the logits at the positions holding the answer tokens); predict: on window[:-1]
    (the CE positions). The remaining row is zero (False for a mask), so no loss reads it.
    """
    shift = 1 if alignment == "seed" else 0
    return [F.pad(rows, (shift, 1 - shift) if rows.dim() == 2 else (0, 0, shift, 1 - shift))
            for rows in answer_rows]
