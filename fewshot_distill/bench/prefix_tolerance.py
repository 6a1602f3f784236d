"""How far the shared-prefix teacher's top-K is from the full-sequence teacher's, on real batches.

Both read the same weights (adapter disabled) at the same answer positions; in float32 they agree to
~1e-6, in bf16 they differ by rounding (the prefix K/V come from a 1-row forward, the suffix attention
concatenates them: other kernel shapes, other summation orders). Reported per run so the bf16
tolerance is a measurement, not a guess. fewshot_distill/bench/prefix_measure.py runs it on step_bench's batches.
"""

from __future__ import annotations

import contextlib
import math

import torch

from fewshot_distill.teachers.shot_prefix import SharedPrefixTeacher
from fewshot_distill.models.student import teacher_logits
from fewshot_distill.losses.alignment import student_answer_window, teacher_answer_positions
from fewshot_distill.losses.divergences import top_k_logits


def bf16_ulp(values: torch.Tensor) -> torch.Tensor:
    """Spacing of bf16 numbers at each value's magnitude (8 significant bits): 2^(floor(log2|x|) - 7)."""
    magnitude = values.abs().clamp(min=2.0 ** -126)
    return torch.exp2(torch.floor(torch.log2(magnitude)) - 7)


def margin_where_top1_differs(full_values: torch.Tensor, full_ids: torch.Tensor, prefix_ids: torch.Tensor) -> float:
    """The largest top-1/top-2 margin of the full teacher (`full_values` sorted, [positions, K >= 2]) at a
    position where the prefix teacher's top-1 id differs; 0.0 when top-1 agrees everywhere. Rounding that
    moves each value by at most d can swap two values only if they were within 2d."""
    differs = full_ids[:, 0] != prefix_ids[:, 0]
    if not bool(differs.any()):
        return 0.0
    return float((full_values[differs, 0] - full_values[differs, 1]).float().max())


@torch.no_grad()
def compare_with_full_teacher(shot_prefix: SharedPrefixTeacher, batches: list[dict], k: int,
                              alignments=("seed", "predict"), autocast_dtype: torch.dtype | None = None) -> dict:
    """Top-K values and ids from both teachers at every real answer position of `batches`.

    Returns max |value difference|, that difference in bf16 ulps of the value, the share of the
    full teacher's top-K ids the prefix teacher also has (as sets, per position), top-1 agreement, and the
    full teacher's largest top-1/top-2 margin where top-1 differs (a near-tie, or a real flip).
    """
    window_lm = shot_prefix.window_lm
    max_diff, max_ulps, shared_ids, top1_same, positions, flip_margin = 0.0, 0.0, 0, 0, 0, 0.0
    for batch in batches:
        device = batch["teacher_input_ids"].device
        _, answer_mask, answer_ids = student_answer_window(batch["student_labels"])
        lengths = batch["teacher_attention_mask"].sum(dim=1)
        for alignment in alignments:
            where = teacher_answer_positions(lengths, answer_mask.sum(dim=1), answer_ids.size(1), alignment)
            autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                        else contextlib.nullcontext())
            with autocast:
                full_values, full_ids = top_k_logits(
                    teacher_logits(window_lm, batch["teacher_input_ids"], batch["teacher_attention_mask"], where), k)
                prefix_values, prefix_ids = top_k_logits(
                    shot_prefix.logits(batch["teacher_input_ids"], batch["teacher_attention_mask"], where), k)
            full_values, full_ids = full_values[answer_mask], full_ids[answer_mask]
            prefix_values, prefix_ids = prefix_values[answer_mask], prefix_ids[answer_mask]
            diff = (full_values - prefix_values).abs()
            max_diff = max(max_diff, float(diff.max()))
            max_ulps = max(max_ulps, float((diff / bf16_ulp(full_values)).max()))
            # Ids as sets: a tie at the K-th value may swap order or membership, not the values.
            shared_ids += int((full_ids.unsqueeze(-1) == prefix_ids.unsqueeze(-2)).any(dim=-1).sum())
            top1_same += int((full_ids[:, 0] == prefix_ids[:, 0]).sum())
            flip_margin = max(flip_margin, margin_where_top1_differs(full_values, full_ids, prefix_ids))
            positions += int(answer_mask.sum())
    return {"max_abs_diff_topk_values": max_diff, "max_diff_in_bf16_ulps": max_ulps,
            "topk_id_set_agreement": shared_ids / max(positions * k, 1),
            "top1_id_agreement": top1_same / max(positions, 1), "max_margin_where_top1_differs": flip_margin,
            "positions": positions, "k": k,
            "alignments": list(alignments),
            "dtype": str(autocast_dtype).replace("torch.", "") if autocast_dtype else "float32",
            "finite": math.isfinite(max_diff)}

