"""The fused CE + distillation kernel over the answer window: one memory-lean pass, with its gradients.

Shapes: B = batch, W = A + 1 window rows (fewshot_distill/losses/alignment.py), V = vocabulary, K = top-K,
M = rows some loss uses. Which divergence (mse, KL family, temperature, top-K tail) is a `LossSpec`; its
per-row math lives in fewshot_distill/losses/divergences.py. The readable unfused version of the same
losses is fewshot_distill/losses/reference.py (tests compare the two).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from fewshot_distill.losses.divergences import MSE, LossSpec, divergence_rows, tail_scaled_logits


def answer_window_losses(window_logits: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor,
                         teacher_ids: torch.Tensor | None = None, teacher_values: torch.Tensor | None = None,
                         distill_mask: torch.Tensor | None = None, chunk_size: int = 512,
                         loss: LossSpec = MSE, teacher_tail: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """CE and the distillation loss on the answer window in one memory-lean pass.  -> (ce, dist) scalars.

    window_logits [B, W, V] (W = A + 1; any float dtype, typically bf16 on GPU), target_ids /
    target_mask [B, W] (ids IGNORE_INDEX or anything where masked), teacher_ids [B, W, K],
    teacher_values [B, W, K] (the teacher's raw logits at those ids), distill_mask [B, W],
    teacher_tail [B, W] (`divergences.tail_logsumexp` of the teacher, only with loss.topk_tail=bucket):
    everything already placed on the window rows.
    ce = token-mean CE over target_mask rows; dist = mean over distill_mask rows of
    `divergences.divergence_rows` (loss.name from the registry there; the default `mse` is the mean over
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
            student_tail = (tail_scaled_logits(chunk, ids[begin:end], loss.temperature).logsumexp(dim=-1)
                            if loss.with_tail else None)
            distill_rows = divergence_rows(values[begin:end], chunk.gather(1, ids[begin:end]), loss,
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
                tail_softmax = tail_scaled_logits(chunk_grad, ids[begin:end], loss.temperature)
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
    closed_form = CLOSED_FORM_GRADIENTS.get(loss.name)
    if closed_form is not None:
        return closed_form(teacher_top, student_top, grad_total, n_rows, row_mask), None
    with torch.enable_grad():
        student_top = student_top.detach().requires_grad_(True)
        inputs = [student_top]
        if student_tail is not None:
            student_tail = student_tail.detach().requires_grad_(True)
            inputs.append(student_tail)
        rows = divergence_rows(teacher_top, student_top, loss, teacher_tail, student_tail)
        total = torch.where(row_mask, rows, 0.0).sum() * (grad_total / n_rows)
        grads = torch.autograd.grad(total, inputs)
    return grads[0], (grads[1] if len(grads) > 1 else None)



def _mse_masked_mean_grad(teacher: torch.Tensor, student: torch.Tensor, grad_total: torch.Tensor,
                         n_rows: torch.Tensor, row_mask: torch.Tensor) -> torch.Tensor:
    """d (grad_total * sum over row_mask of mse / n_rows) / d student  [M, K].

    The hand-derived gradient of the pre-registry kernel, same operations in the same order, so the
    default (paper) path is bit-for-bit what it was.
    """
    scale = grad_total * 2.0 / (student.size(1) * n_rows)
    return (student - teacher) * torch.where(row_mask, scale, 0.0)[:, None]



# Losses whose masked-mean gradient the kernel writes in closed form instead of running autograd on the
# [chunk, K] slice; any other entry of DIVERGENCES takes the autograd path.
CLOSED_FORM_GRADIENTS = {"mse": _mse_masked_mean_grad}
