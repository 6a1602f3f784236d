"""What the teacher reads before the answer: `distillation.teacher_context` names one function here.

Each function gets the rows the shot indices point into, the example's index, the shot rows chosen for it by fewshot_distill/data/shots.py,
and the seed, and returns the shots the teacher's prompt shows (earlier chat turns, in order). The
teacher sequence is then `[shots][question][answer]` (`render_prompt`), the same for every context.

  fewshot           the paper's: the chosen shots, each with its own answer.
  zeroshot          no shots: the teacher reads `[question][answer]`, the student's exact sequence
                    (with the adapter disabled and LoRA B = 0 at step 1, the distillation term is 0).
  shuffled_answers  the chosen shots keep their questions, but their answers are permuted among the
                    shots by a derangement (no shot shows its own answer), seeded per example with
                    `random.Random(f"shuffled_answers:{seed}:{index}")`. Same multiset of answers.

All are deterministic per (seed, index), so a teacher-cache entry stays valid across epochs; the
context name also enters the cache key (fewshot_distill/teachers/cache.py `teacher_cache_context`).

Adding a context: one function here plus its name in `TEACHER_CONTEXTS` (fewshot_distill/config.py validates
against it), the value list in configs/base.yaml's comment, and a config under configs/ablations/.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from fewshot_distill.data.prompts import Shot

TeacherContext = Callable[[Sequence[dict], int, Sequence[int], int], list[Shot]]


def fewshot_context(rows: Sequence[dict], index: int, shot_indices: Sequence[int], seed: int) -> list[Shot]:
    return [Shot(rows[i]["question"], rows[i]["answer"]) for i in shot_indices]


def zeroshot_context(rows: Sequence[dict], index: int, shot_indices: Sequence[int], seed: int) -> list[Shot]:
    return []


def derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation p of range(n) with p[i] != i for every i (n = 0 or n >= 2).

    Rejection sampling of shuffles: about e ~ 2.7 shuffles on average.
    """
    if n == 1:
        raise ValueError("A single shot cannot show another shot's answer; shuffled_answers needs "
                         "data.num_fewshot_examples >= 2")
    while True:
        permutation = list(range(n))
        rng.shuffle(permutation)
        if all(p != i for i, p in enumerate(permutation)):
            return permutation


def shuffled_answers_context(rows: Sequence[dict], index: int, shot_indices: Sequence[int],
                             seed: int) -> list[Shot]:
    # A string seed is hashed with sha512 by `random`, independent of PYTHONHASHSEED and of the shot draw.
    permutation = derangement(len(shot_indices), random.Random(f"shuffled_answers:{seed}:{index}"))
    return [Shot(rows[shot]["question"], rows[shot_indices[source]]["answer"])
            for shot, source in zip(shot_indices, permutation)]


TEACHER_CONTEXTS: dict[str, TeacherContext] = {
    "fewshot": fewshot_context,
    "zeroshot": zeroshot_context,
    "shuffled_answers": shuffled_answers_context,
}


def teacher_shots(name: str, rows: Sequence[dict], index: int, shot_indices: Sequence[int], seed: int
                  ) -> list[Shot]:
    """The shots the teacher of example `index` reads under context `name`."""
    if name not in TEACHER_CONTEXTS:
        raise ValueError(f"distillation.teacher_context must be one of {sorted(TEACHER_CONTEXTS)}, got {name!r}")
    return TEACHER_CONTEXTS[name](rows, index, shot_indices, seed)
