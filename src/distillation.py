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
from torch.autograd.function import once_differentiable

from src.constants import IGNORE_INDEX
from src.data.prompts import AlignmentError

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


def answer_window_losses(window_logits: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor,
                         teacher_ids: torch.Tensor | None = None, teacher_values: torch.Tensor | None = None,
                         mse_mask: torch.Tensor | None = None, chunk_size: int = 512
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """CE and top-K MSE on the answer window in one memory-lean pass.  -> (ce, mse) scalars.

    window_logits [B, W, V] (W = A + 1; any float dtype, typically bf16 on GPU), target_ids /
    target_mask [B, W] (ids IGNORE_INDEX or anything where masked), teacher_ids [B, W, K],
    teacher_values [B, W, K], mse_mask [B, W]: everything already placed on the window rows.
    ce = token-mean CE over target_mask rows; mse = mean over mse_mask rows of the mean over K of
    (student logit at teacher id - teacher value)^2; an empty mask gives 0 (zero gradient). Without
    teacher_ids the MSE is 0 and only the CE is computed (SFT).

    Equals `masked_cross_entropy` + `masked_mse(gather_vocab(...))` (the readable reference, tested
    against this), but keeps less in memory: the unfused graph keeps a float32 copy of every used
    row for F.cross_entropy's backward, and its backward builds three vocab-sized buffers (CE's, the
    gather's, and their sum). Here only the original logits are saved; backward recomputes the
    softmax in float32 per `chunk_size` rows and writes one gradient of the logits' shape and dtype.
    Computed and returned in float32 (float64 logits: float64); the gradient has the logits' dtype.
    """
    if window_logits.dim() != 3:
        raise ValueError(f"window_logits must be [B, W, V], got shape {tuple(window_logits.shape)}")
    rows_shape = window_logits.shape[:2]
    if target_ids.shape != rows_shape or target_mask.shape != rows_shape:
        raise ValueError(f"target_ids and target_mask must be {tuple(rows_shape)} (the window rows), got "
                         f"{tuple(target_ids.shape)} and {tuple(target_mask.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with_teacher = teacher_ids is not None
    if with_teacher:
        if teacher_values is None or mse_mask is None:
            raise ValueError("teacher_ids needs teacher_values and mse_mask (the window rows they belong to)")
        if (teacher_ids.shape[:2] != rows_shape or teacher_values.shape != teacher_ids.shape
                or mse_mask.shape != rows_shape):
            raise ValueError(f"teacher_ids / teacher_values must be {tuple(rows_shape)} + [K] and mse_mask "
                             f"{tuple(rows_shape)}, got {tuple(teacher_ids.shape)}, "
                             f"{tuple(teacher_values.shape)}, {tuple(mse_mask.shape)}")
    elif teacher_values is not None or mse_mask is not None:
        raise ValueError("teacher_values / mse_mask given without teacher_ids")

    vocab = window_logits.size(-1)
    target_mask = target_mask.reshape(-1).bool()
    mse_rows = mse_mask.reshape(-1).bool() if with_teacher else torch.zeros_like(target_mask)
    # Only the rows some loss uses are read (padding rows get an exact zero gradient).
    used_rows = (target_mask | mse_rows).nonzero().flatten()
    ce_weight = target_mask[used_rows]
    mse_weight = mse_rows[used_rows]
    targets = target_ids.reshape(-1)[used_rows].clamp(min=0)  # IGNORE_INDEX rows still gather safely
    if with_teacher:
        k = teacher_ids.size(-1)
        ids = teacher_ids.reshape(-1, k)[used_rows].long()
        values = teacher_values.reshape(-1, k)[used_rows]
    else:  # one dummy column with zero weight keeps a single code path
        ids = targets.new_zeros(used_rows.numel(), 1)
        values = window_logits.new_zeros(used_rows.numel(), 1, dtype=torch.float32)
    return _AnswerWindowLosses.apply(window_logits, used_rows, targets, ce_weight, ids, values, mse_weight,
                                     vocab, chunk_size)


class _AnswerWindowLosses(torch.autograd.Function):
    """See `answer_window_losses`. Row tensors are [M] / [M, K] over the M used rows of the [N, V] logits."""

    @staticmethod
    def forward(ctx, logits, used_rows, targets, ce_weight, ids, values, mse_weight, vocab, chunk_size):
        flat = logits.reshape(-1, vocab)
        compute_dtype = torch.promote_types(logits.dtype, torch.float32)
        values = values.to(compute_dtype)
        ce_total = logits.new_zeros((), dtype=compute_dtype)
        mse_total = logits.new_zeros((), dtype=compute_dtype)
        for begin in range(0, used_rows.numel(), chunk_size):
            end = begin + chunk_size
            chunk = flat.index_select(0, used_rows[begin:end]).to(compute_dtype)
            ce_rows = chunk.logsumexp(dim=-1) - chunk.gather(1, targets[begin:end, None]).squeeze(1)
            mse_rows = (chunk.gather(1, ids[begin:end]) - values[begin:end]).pow(2).mean(dim=-1)
            ce_total = ce_total + torch.where(ce_weight[begin:end], ce_rows, 0.0).sum()
            mse_total = mse_total + torch.where(mse_weight[begin:end], mse_rows, 0.0).sum()
        n_ce = ce_weight.sum().clamp(min=1).to(compute_dtype)
        n_mse = mse_weight.sum().clamp(min=1).to(compute_dtype)
        # The logits themselves, not a float32 copy: backward recomputes the softmax per chunk.
        ctx.save_for_backward(logits, used_rows, targets, ce_weight, ids, values, mse_weight, n_ce, n_mse)
        ctx.vocab, ctx.chunk_size = vocab, chunk_size
        return ce_total / n_ce, mse_total / n_mse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ce, grad_mse):
        logits, used_rows, targets, ce_weight, ids, values, mse_weight, n_ce, n_mse = ctx.saved_tensors
        no_grads = (None,) * 8
        if not ctx.needs_input_grad[0]:
            return (None, *no_grads)
        flat = logits.reshape(-1, ctx.vocab)
        compute_dtype = values.dtype
        # The one vocab-sized buffer: used rows are written chunk by chunk, the rest zeroed.
        grad = torch.empty(flat.shape, dtype=logits.dtype, device=logits.device)
        unused = torch.ones(flat.size(0), dtype=torch.bool, device=logits.device)
        unused[used_rows] = False
        grad[unused] = 0
        ce_scale = grad_ce.to(compute_dtype) / n_ce
        mse_scale = grad_mse.to(compute_dtype) * 2.0 / (ids.size(1) * n_mse)
        for begin in range(0, used_rows.numel(), ctx.chunk_size):
            end = begin + ctx.chunk_size
            rows = used_rows[begin:end]
            chunk_grad = flat.index_select(0, rows).to(compute_dtype)  # a fresh copy: safe to overwrite
            student_values = chunk_grad.gather(1, ids[begin:end])
            # d ce / d logits = (softmax - onehot(target)) / n_ce on the CE rows; softmax in place.
            chunk_grad.sub_(chunk_grad.logsumexp(dim=-1, keepdim=True)).exp_()
            chunk_grad.scatter_add_(1, targets[begin:end, None], chunk_grad.new_full((rows.numel(), 1), -1.0))
            chunk_grad.mul_(torch.where(ce_weight[begin:end], ce_scale, 0.0)[:, None])
            # d mse / d logits = 2 (s - t) / (K n_mse) at the teacher ids of the MSE rows.
            mse_grad = ((student_values - values[begin:end])
                        * torch.where(mse_weight[begin:end], mse_scale, 0.0)[:, None])
            chunk_grad.scatter_add_(1, ids[begin:end], mse_grad)
            grad.index_copy_(0, rows, chunk_grad.to(logits.dtype))
        return (grad.view(logits.shape), *no_grads)
