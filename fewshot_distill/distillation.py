"""Alignment of teacher and student answer tokens, the loss terms, and the fused CE + distillation kernel
over the answer window. Pure tensor functions.

Shapes: B = batch, T = sequence length, A = longest answer in the batch, V = vocabulary, K = top-K.

Both sequences are right-padded and end (before padding) with the same `n_answer` answer tokens:
student answer token j sits at `student_start + j`, teacher answer token j at
`teacher_len - n_answer + j`.

The student's logits are computed only on an "answer window" of A + 1 positions starting one before
the answer, `student_start - 1 + i` for i in [0, A]: window[:, :A] predicts answer token j (the CE
positions, also the `predict` alignment) and window[:, 1:] holds answer token j (the `seed`
alignment of the paper, which compares the logits at the positions holding the answer tokens).

`answer_window_losses` fuses the CE with the distillation term; which divergence (mse, KL family,
temperature, top-K tail) is a `fewshot_distill.losses.LossSpec`, the registry of divergences lives in fewshot_distill/losses.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill import losses as L
from fewshot_distill.data.prompts import AlignmentError
from fewshot_distill.losses import LossSpec

ALIGNMENTS = ("seed", "predict")
MSE = LossSpec()  # the paper's loss, the default


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
    """CE + lambda * distillation term (the paper's: MSE(teacher top-K, student at the same ids))."""
    return ce_loss + lambda_distill * dist_loss


def answer_window_losses(window_logits: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor,
                         teacher_ids: torch.Tensor | None = None, teacher_values: torch.Tensor | None = None,
                         distill_mask: torch.Tensor | None = None, chunk_size: int = 512,
                         loss: LossSpec = MSE, teacher_tail: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """CE and the distillation loss on the answer window in one memory-lean pass.  -> (ce, dist) scalars.

    window_logits [B, W, V] (W = A + 1; any float dtype, typically bf16 on GPU), target_ids /
    target_mask [B, W] (ids IGNORE_INDEX or anything where masked), teacher_ids [B, W, K],
    teacher_values [B, W, K] (the teacher's raw logits at those ids), distill_mask [B, W],
    teacher_tail [B, W] (`fewshot_distill.losses.tail_logsumexp` of the teacher, only with loss.topk_tail=bucket):
    everything already placed on the window rows.
    ce = token-mean CE over target_mask rows; dist = mean over distill_mask rows of
    `fewshot_distill.losses.divergence_rows` (loss.name from the registry there; the default `mse` is the mean over
    K of (student logit at teacher id - teacher value)^2). An empty mask gives 0 (zero gradient).
    Without teacher_ids dist is 0 and only the CE is computed (SFT).

    For mse this equals `masked_cross_entropy` + `masked_mse(gather_vocab(...))` (the readable
    reference, tested against this), but keeps less in memory: the unfused graph keeps a float32 copy
    of every used row for F.cross_entropy's backward, and its backward builds three vocab-sized
    buffers (CE's, the gather's, and their sum). Here only the original logits are saved; backward
    recomputes the softmax in float32 per `chunk_size` rows and writes one gradient of the logits'
    shape and dtype. The distillation gradient w.r.t. the K gathered student logits (and, for the
    tail bucket, the student's tail log-sum-exp, whose gradient is the tail softmax / T) comes from
    autograd on the [chunk, K] slice, or from the loss's closed form when it has one (mse).
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
        if teacher_values is None or distill_mask is None:
            raise ValueError("teacher_ids needs teacher_values and distill_mask (the window rows they belong to)")
        if (teacher_ids.shape[:2] != rows_shape or teacher_values.shape != teacher_ids.shape
                or distill_mask.shape != rows_shape):
            raise ValueError(f"teacher_ids / teacher_values must be {tuple(rows_shape)} + [K] and distill_mask "
                             f"{tuple(rows_shape)}, got {tuple(teacher_ids.shape)}, "
                             f"{tuple(teacher_values.shape)}, {tuple(distill_mask.shape)}")
        if loss.with_tail and (teacher_tail is None or teacher_tail.shape != rows_shape):
            raise ValueError(f"distillation.topk_tail=bucket needs the teacher's tail log-sum-exp "
                             f"{tuple(rows_shape)} (teacher_tail), got "
                             f"{None if teacher_tail is None else tuple(teacher_tail.shape)}")
        if not loss.with_tail and teacher_tail is not None:
            raise ValueError(f"teacher_tail given but distillation.topk_tail={loss.topk_tail}")
    elif teacher_values is not None or distill_mask is not None or teacher_tail is not None:
        raise ValueError("teacher_values / distill_mask / teacher_tail given without teacher_ids")

    vocab = window_logits.size(-1)
    target_mask = target_mask.reshape(-1).bool()
    distill_rows = distill_mask.reshape(-1).bool() if with_teacher else torch.zeros_like(target_mask)
    # Only the rows some loss uses are read (padding rows get an exact zero gradient).
    used_rows = (target_mask | distill_rows).nonzero().flatten()
    ce_weight = target_mask[used_rows]
    distill_weight = distill_rows[used_rows]
    targets = target_ids.reshape(-1)[used_rows].clamp(min=0)  # IGNORE_INDEX rows still gather safely
    tail = None
    if with_teacher:
        k = teacher_ids.size(-1)
        ids = teacher_ids.reshape(-1, k)[used_rows].long()
        values = teacher_values.reshape(-1, k)[used_rows]
        if loss.with_tail:
            tail = teacher_tail.reshape(-1)[used_rows]
    else:  # one dummy column with zero weight (mse) keeps a single code path
        loss = MSE
        ids = targets.new_zeros(used_rows.numel(), 1)
        values = window_logits.new_zeros(used_rows.numel(), 1, dtype=torch.float32)
    return _AnswerWindowLosses.apply(window_logits, used_rows, targets, ce_weight, ids, values, distill_weight,
                                     tail, loss, vocab, chunk_size)


class _AnswerWindowLosses(torch.autograd.Function):
    """See `answer_window_losses`. Row tensors are [M] / [M, K] over the M used rows of the [N, V] logits."""

    @staticmethod
    def forward(ctx, logits, used_rows, targets, ce_weight, ids, values, distill_weight, tail, loss, vocab,
                chunk_size):
        flat = logits.reshape(-1, vocab)
        compute_dtype = torch.promote_types(logits.dtype, torch.float32)
        values = values.to(compute_dtype)
        tail = tail.to(compute_dtype) if tail is not None else None
        ce_total = logits.new_zeros((), dtype=compute_dtype)
        distill_total = logits.new_zeros((), dtype=compute_dtype)
        for begin in range(0, used_rows.numel(), chunk_size):
            end = begin + chunk_size
            chunk = flat.index_select(0, used_rows[begin:end]).to(compute_dtype)
            ce_rows = chunk.logsumexp(dim=-1) - chunk.gather(1, targets[begin:end, None]).squeeze(1)
            student_tail = (L.tail_scaled_logits(chunk, ids[begin:end], loss.temperature).logsumexp(dim=-1)
                            if loss.with_tail else None)
            distill_rows = L.divergence_rows(values[begin:end], chunk.gather(1, ids[begin:end]), loss,
                                             None if tail is None else tail[begin:end], student_tail)
            ce_total = ce_total + torch.where(ce_weight[begin:end], ce_rows, 0.0).sum()
            distill_total = distill_total + torch.where(distill_weight[begin:end], distill_rows, 0.0).sum()
        n_ce = ce_weight.sum().clamp(min=1).to(compute_dtype)
        n_distill = distill_weight.sum().clamp(min=1).to(compute_dtype)
        # The logits themselves, not a float32 copy: backward recomputes the softmax per chunk.
        ctx.save_for_backward(logits, used_rows, targets, ce_weight, ids, values, distill_weight, tail, n_ce,
                              n_distill)
        ctx.vocab, ctx.chunk_size, ctx.loss = vocab, chunk_size, loss
        return ce_total / n_ce, distill_total / n_distill

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ce, grad_distill):
        logits, used_rows, targets, ce_weight, ids, values, distill_weight, tail, n_ce, n_distill = ctx.saved_tensors
        no_grads = (None,) * 10
        if not ctx.needs_input_grad[0]:
            return (None, *no_grads)
        loss = ctx.loss
        flat = logits.reshape(-1, ctx.vocab)
        compute_dtype = values.dtype
        # The one vocab-sized buffer: used rows are written chunk by chunk, the rest zeroed.
        grad = torch.empty(flat.shape, dtype=logits.dtype, device=logits.device)
        unused = torch.ones(flat.size(0), dtype=torch.bool, device=logits.device)
        unused[used_rows] = False
        grad[unused] = 0
        ce_scale = grad_ce.to(compute_dtype) / n_ce
        grad_distill = grad_distill.to(compute_dtype)
        for begin in range(0, used_rows.numel(), ctx.chunk_size):
            end = begin + ctx.chunk_size
            rows = used_rows[begin:end]
            chunk_grad = flat.index_select(0, rows).to(compute_dtype)  # a fresh copy: safe to overwrite
            tail_softmax = student_tail = None
            if loss.with_tail:  # becomes d dist / d logits through the student's tail log-sum-exp
                tail_softmax = L.tail_scaled_logits(chunk_grad, ids[begin:end], loss.temperature)
                student_tail = tail_softmax.logsumexp(dim=-1)
            distill_grad, tail_grad = _distillation_grads(
                loss, values[begin:end], chunk_grad.gather(1, ids[begin:end]),
                None if tail is None else tail[begin:end], student_tail, grad_distill, n_distill,
                distill_weight[begin:end])
            # d ce / d logits = (softmax - onehot(target)) / n_ce on the CE rows; softmax in place.
            chunk_grad.sub_(chunk_grad.logsumexp(dim=-1, keepdim=True)).exp_()
            chunk_grad.scatter_add_(1, targets[begin:end, None], chunk_grad.new_full((rows.numel(), 1), -1.0))
            chunk_grad.mul_(torch.where(ce_weight[begin:end], ce_scale, 0.0)[:, None])
            chunk_grad.scatter_add_(1, ids[begin:end], distill_grad)
            if tail_softmax is not None:
                # d tail_lse / d logits = softmax over the non-top-K ids at T, divided by T.
                tail_softmax.sub_(student_tail[:, None]).exp_()
                chunk_grad.add_(tail_softmax.mul_((tail_grad / loss.temperature)[:, None]))
            grad.index_copy_(0, rows, chunk_grad.to(logits.dtype))
        return (grad.view(logits.shape), *no_grads)


def _distillation_grads(loss: LossSpec, teacher_top, student_top, teacher_tail, student_tail, grad_total,
                        n_rows, row_mask) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradient of grad_total * (sum over row_mask of divergence_rows) / n_rows for one chunk.

    -> (d / d student_top [M, K], d / d student tail log-sum-exp [M] or None). Closed form when the
    loss has one (mse), else autograd on these small tensors.
    """
    entry = loss.divergence
    if entry.masked_mean_grad is not None:
        return entry.masked_mean_grad(teacher_top, student_top, grad_total, n_rows, row_mask), None
    with torch.enable_grad():
        student_top = student_top.detach().requires_grad_(True)
        inputs = [student_top]
        if student_tail is not None:
            student_tail = student_tail.detach().requires_grad_(True)
            inputs.append(student_tail)
        rows = L.divergence_rows(teacher_top, student_top, loss, teacher_tail, student_tail)
        total = torch.where(row_mask, rows, 0.0).sum() * (grad_total / n_rows)
        grads = torch.autograd.grad(total, inputs)
    return grads[0], (grads[1] if len(grads) > 1 else None)
