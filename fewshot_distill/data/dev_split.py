"""The dev split: `data.dev_examples` seeded rows of the train split, held back from training and from shots.

One pure function decides which rows they are (`dev_row_indices`); the row loader applies it
(`rows_of_split`, called by fewshot_distill/data/examples.py `load_task_rows`), so training examples, the
teacher's shots, the evaluation's few-shot row and the held-out diagnostics all read the train split
without them, and `--split dev` reads exactly them. The choice depends only on the number of train rows
and N (seed `DEV_SEED`, not training.seed): runs with different seeds are selected on the same dev rows.

    dev = dev_row_indices(7473, 200)              # sorted row indices of the dev split
    train_rows = rows_of_split(rows, "train", data_cfg)
"""

from __future__ import annotations

import random
from typing import Sequence

DEV_SPLIT = "dev"
DEV_SEED = 1234


def dev_row_indices(n_rows: int, n_dev: int) -> list[int]:
    """Sorted indices of the `n_dev` dev rows among `n_rows` train rows (none when n_dev is 0)."""
    if n_dev < 0:
        raise ValueError(f"data.dev_examples must be >= 0, got {n_dev}")
    if n_dev >= n_rows and n_dev > 0:
        raise ValueError(f"data.dev_examples={n_dev} leaves no training rows out of {n_rows}; lower it")
    return sorted(random.Random(DEV_SEED).sample(range(n_rows), n_dev))


def rows_of_split(train_split_rows: Sequence[dict], split: str, n_dev: int) -> list[dict]:
    """The dev rows (split "dev") or the other rows (any other split) of the train split's rows."""
    dev = set(dev_row_indices(len(train_split_rows), n_dev))
    want_dev = split == DEV_SPLIT
    return [row for i, row in enumerate(train_split_rows) if (i in dev) == want_dev]
