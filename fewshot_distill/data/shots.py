"""Which training rows are the few-shot examples of an example: the one shot selector.

Used by training's teacher (fewshot_distill/data/examples.py `build_example`) and by the evaluation's
few-shot base row (fewshot_distill/eval/prompts.py `build_prompts`), so both read shots chosen the same way.
Every selection is deterministic in (seed, index): the same shots in every epoch, on every rank,
in every backend.

The example itself is never one of its own shots. Which rows are "the example itself":
  training:   row `index` of the same split (`training_shot_indices`);
  evaluation: every training row whose normalised question equals the test question
              (`evaluation_shot_indices`; GSM8K has none, other data might).

Modes (`data.shot_sampling`):
  per_example  the paper's: `random.Random(seed + index).sample(range(n_rows), k + n_excluded)`,
               minus the excluded rows, first k kept. Training's shots are exactly those of the
               former `sample_shot_indices`, evaluation's exactly those of `icl_shot_indices`.
  fixed        one set for every example: the first k rows of a seeded permutation of the
               training rows (`random.Random(seed)`, see `fixed_shot_order`). An example whose own
               row is in that set gets that shot replaced, at the same position, by the next row of
               the permutation after the k shots that is not excluded; every other shot and the
               order stay the same. So all examples but those k rows share one shot prefix.

    shots = training_shot_indices(len(rows), index=7, n_shots=8, seed=42, mode="per_example")
    prefix_rows = fixed_shot_indices(len(train_rows), n_shots=8, seed=42)
"""

from __future__ import annotations

import random
from collections import defaultdict
from functools import lru_cache
from typing import Collection, Sequence

SHOT_SAMPLING_MODES = ("per_example", "fixed")


def normalise_question(question: str) -> str:
    """Question text with runs of whitespace collapsed: the identity used to exclude a test question."""
    return " ".join(question.split())


def question_index(rows: Sequence[dict]) -> dict[str, list[int]]:
    """Normalised question text -> indices of the rows that ask it."""
    index = defaultdict(list)
    for i, row in enumerate(rows):
        index[normalise_question(row["question"])].append(i)
    return dict(index)


def _check_enough_rows(n_rows: int, n_shots: int, n_excluded: int, what: str) -> None:
    available = n_rows - n_excluded
    if n_shots > available:
        raise ValueError(f"Cannot draw {n_shots} shots from {available} {what}; lower "
                         "data.num_fewshot_examples or use more data.")


def per_example_shot_indices(n_rows: int, index: int, n_shots: int, seed: int,
                             excluded: Collection[int]) -> list[int]:
    """`n_shots` distinct rows of `range(n_rows)` drawn with `random.Random(seed + index)`, none excluded.

    The sample is enlarged by the number of excluded rows and those are removed from it.
    """
    excluded = set(excluded)
    rng = random.Random(seed + index)
    drawn = rng.sample(range(n_rows), n_shots + len(excluded))
    return [i for i in drawn if i not in excluded][:n_shots]


@lru_cache(maxsize=8)
def fixed_shot_order(n_rows: int, seed: int) -> tuple[int, ...]:
    """The seeded permutation of `range(n_rows)` behind `fixed` mode: shots first, then replacements."""
    return tuple(random.Random(seed).sample(range(n_rows), n_rows))


def fixed_shot_indices(n_rows: int, n_shots: int, seed: int) -> list[int]:
    """The shared shot set of `fixed` mode, in prompt order (every example not among them reads these)."""
    _check_enough_rows(n_rows, n_shots, 0, "rows")
    return list(fixed_shot_order(n_rows, seed)[:n_shots])


def fixed_shots_excluding(n_rows: int, n_shots: int, seed: int, excluded: Collection[int]) -> list[int]:
    """The fixed set with each excluded row replaced (same position) by the next unused, non-excluded row."""
    excluded = set(excluded)
    order = fixed_shot_order(n_rows, seed)
    shots = list(order[:n_shots])
    if not excluded.intersection(shots):
        return shots
    spares = (row for row in order[n_shots:] if row not in excluded)
    return [next(spares) if row in excluded else row for row in shots]


def select_shot_indices(n_rows: int, index: int, n_shots: int, seed: int, excluded: Collection[int],
                        mode: str = "per_example") -> list[int]:
    """Shots for the example keyed `index` under `mode`, never one of `excluded`."""
    if mode not in SHOT_SAMPLING_MODES:
        raise ValueError(f"data.shot_sampling must be one of {SHOT_SAMPLING_MODES}, got {mode!r}")
    excluded = set(excluded)
    _check_enough_rows(n_rows, n_shots, len(excluded), "usable rows (the example itself excluded)")
    if n_shots == 0:
        return []
    if mode == "per_example":
        return per_example_shot_indices(n_rows, index, n_shots, seed, excluded)
    return fixed_shots_excluding(n_rows, n_shots, seed, excluded)


def training_shot_indices(n_rows: int, index: int, n_shots: int, seed: int,
                          mode: str = "per_example") -> list[int]:
    """Shots of training example `index`, drawn from the other rows of the same split."""
    return select_shot_indices(n_rows, index, n_shots, seed, excluded={index}, mode=mode)


def evaluation_shot_indices(train_rows: Sequence[dict], test_question: str, test_index: int, n_shots: int,
                            seed: int, mode: str = "per_example",
                            train_questions: dict[str, list[int]] | None = None) -> list[int]:
    """Training rows used as shots for test example `test_index`; none asks the test question.

    `train_questions` (from `question_index(train_rows)`) saves rebuilding the lookup per example.
    """
    if train_questions is None:
        train_questions = question_index(train_rows)
    excluded = train_questions.get(normalise_question(test_question), ())
    return select_shot_indices(len(train_rows), test_index, n_shots, seed, excluded=excluded, mode=mode)
