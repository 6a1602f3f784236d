"""What the teacher is: one class per variant, one call for the loss step.

    teacher = AdapterDisabledTeacher(window_lm, k=256, alignment="seed")
    values, ids, *tail = teacher.top_k(batch, answer_ids, answer_mask)   # [B, A, K] x2 (+ [B, A])

`Teacher.top_k` checks that the batch's teacher sequences end with the answer ids (per batch, so a
wrong teacher sequence can never be scored), finds the teacher positions matching the student's
(`distillation.alignment`), runs `logits_at` under `torch.no_grad()` and keeps the top-K logits
(with `tail_temperature`, topk_tail=bucket, also the log-sum-exp of the other ids' logits / T).
It returns a tuple (values float32 [B, A, K], ids int64 [B, A, K]) or, with a tail, (values, ids,
tail [B, A]); rows beyond a row's answer hold values for a clamped position and are masked by the
loss.

Variants (a new one is one small subclass defining `logits_at`):
  AdapterDisabledTeacher   the student's own weights with the LoRA adapter disabled (the paper's)
  LiveTeacher              the current student, adapter on, reading the teacher context
                           (distillation.teacher_weights=live, SDFT / OPSD's live teacher; not cacheable)
  ShotPrefixTeacher        the adapter-disabled teacher reading each row's suffix on the cached shared
                           shot prefix (shot_prefix.py; distillation.reuse_shot_prefix)
  FrozenCopyTeacher        a frozen copy of the starting weights (model.finetune=full; frozen_copy.py)
  CachedTeacher            another Teacher's results memoised per example (cache.py)
`build_teacher` (fewshot_distill/teachers/__init__.py) picks one from the config.
AdapterDisabledTeacher, LiveTeacher and FrozenCopyTeacher each run one `AnswerWindowLM` (`WindowLMTeacher`).

`frozen_weights` is the module whose (non-LoRA) parameters determine the logits: the teacher cache
keys its entries by them. `cache_tag` separates variants whose values differ only by rounding.
"""

from __future__ import annotations

import torch

from fewshot_distill.models.student import AnswerWindowLM, teacher_logits
from fewshot_distill.losses.alignment import ALIGNMENTS, check_aligned_token_ids, teacher_answer_positions
from fewshot_distill.losses.divergences import tail_logsumexp, top_k_logits


class Teacher:
    """Base class: `top_k` around a `logits_at` that subclasses define."""

    cache_tag: str | None = None     # part of the teacher cache context when set
    cacheable: bool = True           # False for a teacher whose weights change during training

    def __init__(self, k: int, alignment: str = "seed", tail_temperature: float | None = None):
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        if k <= 0:
            raise ValueError(f"k must be > 0 for a teacher top-K, got {k}")
        self.k = k
        self.alignment = alignment
        self.tail_temperature = tail_temperature

    @property
    def frozen_weights(self) -> torch.nn.Module:
        raise NotImplementedError

    def logits_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
                  ) -> torch.Tensor:
        """Teacher logits at `positions`: [B, Tt] x2, [B, N] -> [B, N, V]. Called under no_grad."""
        raise NotImplementedError

    def stats(self) -> dict:
        """What this teacher counted during the run (cache hits, prefix reuse), for the end-of-run log."""
        return {}

    def top_k(self, batch: dict, answer_ids: torch.Tensor, answer_mask: torch.Tensor
              ) -> tuple[torch.Tensor, ...]:
        """Top-K at the answer positions of `batch` (teacher_input_ids / teacher_attention_mask [B, Tt]).

        answer_ids / answer_mask [B, A] are the student's answer tokens (`student_answer_window`).
        """
        teacher_lengths = batch["teacher_attention_mask"].sum(dim=1)
        check_aligned_token_ids(batch["teacher_input_ids"], teacher_lengths, answer_ids, answer_mask,
                                  batch.get("example_index"))
        positions = teacher_answer_positions(teacher_lengths, answer_mask.sum(dim=1), answer_ids.size(1),
                                               self.alignment)
        with torch.no_grad():
            logits = self.logits_at(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
            values, ids = top_k_logits(logits, self.k)
            if self.tail_temperature is None:
                return values, ids
            return values, ids, tail_logsumexp(logits, ids, self.tail_temperature)


class WindowLMTeacher(Teacher):
    """A teacher that runs one `AnswerWindowLM` (its `window_lm`); subclasses say how."""

    def __init__(self, window_lm: AnswerWindowLM, k: int, alignment: str = "seed",
                 tail_temperature: float | None = None):
        super().__init__(k, alignment, tail_temperature)
        self.window_lm = window_lm

    @property
    def frozen_weights(self) -> torch.nn.Module:
        return self.window_lm


class AdapterDisabledTeacher(WindowLMTeacher):
    """The frozen base model: the student's `AnswerWindowLM` run with its LoRA adapter disabled."""

    def logits_at(self, input_ids, attention_mask, positions):
        return teacher_logits(self.window_lm, input_ids, attention_mask, positions)


class LiveTeacher(WindowLMTeacher):
    """The current student (adapter on) reading the teacher context: SDFT / OPSD's live teacher.

    Run in eval mode (no LoRA dropout: the targets are the model's, not a noisy draw of them) and
    restored to the caller's mode. Its weights change every optimizer step, so it is never cached.
    """

    cacheable = False

    def logits_at(self, input_ids, attention_mask, positions):
        was_training = self.window_lm.training
        self.window_lm.eval()
        try:
            return self.window_lm(input_ids, attention_mask, positions)
        finally:
            self.window_lm.train(was_training)
