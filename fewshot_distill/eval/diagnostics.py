"""Teacher-forced held-out diagnostics: how far a model's answer distribution is from the k-shot teacher's.

On CPU-sized models, greedy GSM8K accuracy is ~0 and says nothing; the likelihood of the gold answer
and the divergence from the few-shot teacher do. For every entry (a base-model row or a checkpoint)
and every held-out row, one batched forward over [question][gold answer] gives the logits on the
answer window (fewshot_distill/losses/window_kernel.py: window[:, :A] predicts answer token j, window[:, 1:] holds it):

    nll        mean over answer tokens of -log p_entry(gold token)            (nats/token)
    top1       share of answer tokens whose argmax is the gold token
    kl         mean over answer tokens of KL(p_teacher || p_entry), full vocabulary, at the positions
               predicting each answer token
    topk_mse   the training objective's term: mean over answer tokens of the mean over the teacher's
               top-K ids of (entry logit - teacher logit)^2, at the distillation.alignment positions
    gap_closed_nll = (nll_base0 - nll) / (nll_base0 - nll_teacher)
    gap_closed_kl  = (kl_base0 - kl) / kl_base0          (the teacher's own KL is 0)

The teacher is the base model reading k shots from the training split before the question, the
prompt of the evaluation's `icl_{k}shot` row (`build_heldout_batches`: training's `build_example`, so
positions and alignment checks are training's); its window logits are computed once and reused for
every entry.

Shapes: B rows, A = longest answer, W = A + 1 window positions, V vocabulary, K top-K.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from fewshot_distill.losses.alignment import ALIGNMENTS, check_aligned_token_ids, student_answer_window, window_positions


SUM_KEYS = ("nll", "top1", "kl", "topk_mse", "tokens")
METRIC_KEYS = ("nll", "top1", "kl", "topk_mse", "gap_closed_nll", "gap_closed_kl", "tokens", "rows")
# Below this |denominator| the gap ratio is undefined (the teacher is not better than 0-shot).
GAP_EPSILON = 1e-9


def row_sums(entry_window: torch.Tensor, teacher_window: torch.Tensor, answer_ids: torch.Tensor,
             answer_mask: torch.Tensor, top_k: int, alignment: str = "seed", chunk_size: int = 256
             ) -> dict[str, torch.Tensor]:
    """Per-row sums over answer tokens of NLL, top-1 hits, KL(teacher || entry) and top-K MSE.

    entry_window, teacher_window [B, W, V] (any float dtype; computed in float32), answer_ids /
    answer_mask [B, A] (W = A + 1). Returns {name: [B] float64} for SUM_KEYS ("tokens" = answer
    tokens per row). Full-vocabulary softmaxes are taken `chunk_size` positions at a time.
    """
    if entry_window.shape != teacher_window.shape:
        raise ValueError(f"entry and teacher windows differ in shape: {tuple(entry_window.shape)} vs "
                         f"{tuple(teacher_window.shape)}")
    n_rows, width, vocab = entry_window.shape
    if answer_ids.shape != (n_rows, width - 1) or answer_mask.shape != answer_ids.shape:
        raise ValueError(f"answer_ids / answer_mask must be [B, W - 1] = {(n_rows, width - 1)}, got "
                         f"{tuple(answer_ids.shape)} and {tuple(answer_mask.shape)}")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if top_k > vocab:
        raise ValueError(f"top_k={top_k} exceeds the vocabulary size {vocab}")
    rows, offsets = answer_mask.nonzero(as_tuple=True)   # [N] each: one entry per answer token
    predict_at = offsets                                  # window row predicting answer token j
    compare_at = offsets + (1 if alignment == "seed" else 0)
    targets = answer_ids[rows, offsets]
    sums = {key: torch.zeros(n_rows, dtype=torch.float64, device=entry_window.device) for key in SUM_KEYS}
    for begin in range(0, rows.numel(), chunk_size):
        r = rows[begin: begin + chunk_size]
        entry_logp = F.log_softmax(entry_window[r, predict_at[begin: begin + chunk_size]].float(), dim=-1)
        teacher_logp = F.log_softmax(teacher_window[r, predict_at[begin: begin + chunk_size]].float(), dim=-1)
        gold = targets[begin: begin + chunk_size, None]
        nll = -entry_logp.gather(1, gold).squeeze(1)
        top1 = (entry_logp.argmax(dim=-1) == gold.squeeze(1)).float()
        kl = (teacher_logp.exp() * (teacher_logp - entry_logp)).sum(dim=-1)
        teacher_at = teacher_window[r, compare_at[begin: begin + chunk_size]].float()
        entry_at = entry_window[r, compare_at[begin: begin + chunk_size]].float()
        values, ids = teacher_at.topk(top_k, dim=-1)
        mse = (entry_at.gather(1, ids) - values).pow(2).mean(dim=-1)
        for key, value in (("nll", nll), ("top1", top1), ("kl", kl), ("topk_mse", mse)):
            sums[key].index_add_(0, r, value.double())
        sums["tokens"].index_add_(0, r, torch.ones_like(nll, dtype=torch.float64))
    return sums


def gap_closed(base0: float, entry: float, teacher: float) -> float | None:
    """(base0 - entry) / (base0 - teacher): 0 at the 0-shot base model, 1 at the teacher; None if undefined."""
    denominator = base0 - teacher
    if abs(denominator) < GAP_EPSILON:
        return None
    return (base0 - entry) / denominator


@dataclass
class Totals:
    """Sums over answer tokens (and the row count) of one entry on a set of rows."""
    sums: dict[str, float] = field(default_factory=lambda: {key: 0.0 for key in SUM_KEYS})
    rows: int = 0

    def add(self, row_sums_: dict[str, torch.Tensor]) -> None:
        for key in SUM_KEYS:
            self.sums[key] += float(row_sums_[key].sum())
        self.rows += int(row_sums_["tokens"].numel())

    def mean(self, key: str) -> float:
        return self.sums[key] / max(self.sums["tokens"], 1.0)

    def as_vector(self) -> torch.Tensor:
        return torch.tensor([self.sums[key] for key in SUM_KEYS] + [self.rows], dtype=torch.float64)

    @classmethod
    def from_vector(cls, vector: torch.Tensor) -> "Totals":
        values = vector.tolist()
        return cls(sums=dict(zip(SUM_KEYS, values[:-1])), rows=int(round(values[-1])))


def summarize(entry: Totals, base0: Totals, teacher: Totals) -> dict:
    """The metrics of one entry (token means over all its rows, gap ratios against base0 and the teacher)."""
    metrics = {key: entry.mean(key) for key in ("nll", "top1", "kl", "topk_mse")}
    metrics["gap_closed_nll"] = gap_closed(base0.mean("nll"), metrics["nll"], teacher.mean("nll"))
    metrics["gap_closed_kl"] = gap_closed(base0.mean("kl"), metrics["kl"], 0.0)
    metrics["tokens"] = int(round(entry.sums["tokens"]))
    metrics["rows"] = entry.rows
    return metrics


# ---- model side: answer-window logits through training's AnswerWindowLM ---------------------------------
# (a peft model or a plain causal LM: a base model or a full fine-tuning checkpoint)

def student_window(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Window positions [B, W], answer mask [B, A] and answer ids [B, A] of a collated batch (training's)."""
    return student_answer_window(batch["student_labels"])


def teacher_window_positions(batch: dict, answer_ids: torch.Tensor, answer_mask: torch.Tensor) -> torch.Tensor:
    """The teacher's W positions matching the student window: teacher_len - n_answer - 1 + i.  -> [B, W]."""
    lengths = batch["teacher_attention_mask"].sum(dim=1)
    check_aligned_token_ids(batch["teacher_input_ids"], lengths, answer_ids, answer_mask,
                              batch.get("example_index"))
    n_answer = answer_mask.sum(dim=1)
    positions, _ = window_positions(lengths - n_answer - 1, n_answer + 1, answer_ids.size(1) + 1)
    return positions


@torch.no_grad()
def entry_window_logits(window_lm, batch: dict, device) -> torch.Tensor:
    """The model's logits on the student answer window, adapter as set.  -> [B, W, V]."""
    positions, _, _ = student_window(batch)
    return window_lm(batch["student_input_ids"].to(device), batch["student_attention_mask"].to(device),
                     positions.to(device))


@dataclass
class TeacherReference:
    """The teacher's window logits per batch (kept on `store_device`), and the base0/teacher totals."""
    batches: list[dict]
    teacher_windows: list[torch.Tensor]
    teacher: Totals
    base0: Totals
    base0_rows: list[dict[str, torch.Tensor]]
    teacher_rows: list[dict[str, torch.Tensor]]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.teacher_windows)


@torch.no_grad()
def build_reference(window_lm, batches: Sequence[dict], top_k: int, alignment: str, device,
                    store_device="cpu") -> TeacherReference:
    """Teacher window logits (adapter disabled, k-shot context) once, plus base0's and the teacher's totals."""
    from fewshot_distill.models.student import adapter_disabled, teacher_logits

    windows, teacher, base0, base0_rows, teacher_rows = [], Totals(), Totals(), [], []
    for batch in batches:
        _, answer_mask, answer_ids = student_window(batch)
        positions = teacher_window_positions(batch, answer_ids, answer_mask)
        teacher_window = teacher_logits(window_lm, batch["teacher_input_ids"].to(device),
                                        batch["teacher_attention_mask"].to(device), positions.to(device)).float()
        # base_0shot = the same frozen weights on the student's 0-shot input
        with adapter_disabled(window_lm):
            base_window = entry_window_logits(window_lm, batch, device)
        ids, mask = answer_ids.to(device), answer_mask.to(device)
        teacher_rows.append(row_sums(teacher_window, teacher_window, ids, mask, top_k, alignment))
        base0_rows.append(row_sums(base_window, teacher_window, ids, mask, top_k, alignment))
        teacher.add(teacher_rows[-1])
        base0.add(base0_rows[-1])
        windows.append(teacher_window.to(store_device))
    return TeacherReference(list(batches), windows, teacher, base0, base0_rows, teacher_rows)


@torch.no_grad()
def entry_rows(window_lm, reference: TeacherReference, top_k: int, alignment: str, device
               ) -> Iterable[tuple[dict, dict[str, torch.Tensor]]]:
    """(batch, per-row sums) of the model as it is (adapter enabled) against the cached teacher."""
    for batch, teacher_window in zip(reference.batches, reference.teacher_windows):
        _, answer_mask, answer_ids = student_window(batch)
        window = entry_window_logits(window_lm, batch, device)
        yield batch, row_sums(window, teacher_window.to(device), answer_ids.to(device), answer_mask.to(device),
                              top_k, alignment)


def build_heldout_batches(tokenizer, rows: Sequence[dict], indices: Sequence[int], data_cfg, seed: int,
                          batch_size: int, shot_rows: Sequence[dict]) -> list[dict]:
    """Held-out rows -> collated batches with teacher (k shots from `shot_rows`) and student sequences.

    Examples are built by training's `build_example(..., with_teacher=True)`, so positions and
    alignment checks are training's; the shots are those of the evaluation's few-shot base row
    (`shot_rows` = the training split, `fewshot_distill.data.shots.evaluation_shot_indices`), so the teacher here
    reads exactly the prompt the `icl_{k}shot` accuracy row generates from.
    """
    from fewshot_distill.data.examples import build_examples, collate_examples

    # Always the k-shot teacher, whatever distillation.teacher_context a run trained with: the
    # diagnostics measure the distance to the paper's teacher.
    examples, _ = build_examples(rows, tokenizer, data_cfg, seed=seed, with_teacher=True, indices=indices,
                                 teacher_context="fewshot", shot_rows=shot_rows)
    return [collate_examples(examples[i: i + batch_size], pad_token_id=tokenizer.pad_token_id)
            for i in range(0, len(examples), batch_size)]


def per_row_records(condition: str, label: str, batch: dict, sums: dict[str, torch.Tensor]) -> list[dict]:
    """One JSON-able line per row: token means of the row's answer (and its token count)."""
    records = []
    for i, index in enumerate(batch["example_index"].tolist()):
        tokens = float(sums["tokens"][i])
        records.append({"condition": condition, "label": label, "index": int(index), "tokens": int(tokens),
                        **{key: float(sums[key][i]) / max(tokens, 1.0) for key in ("nll", "top1", "kl", "topk_mse")}})
    return records
