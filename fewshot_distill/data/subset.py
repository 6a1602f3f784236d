"""Seeded subsets of a split's row indices: the evaluation's test subset (`--n_samples`), training's
`data.max_train_examples` and the held-out diagnostics rows. Data layer: training and evaluation both use it.

    indices = select_subset(len(test_rows), n_samples=200, seed=42)
"""

from __future__ import annotations

import random


def select_subset(n_total: int, n_samples: int | None, seed: int) -> list[int]:
    """Sorted test indices: all of them when n_samples is None or >= n_total, else a seeded sample."""
    if n_total <= 0:
        raise ValueError("The test split is empty; check data.path / data.test_split")
    if n_samples is None or n_samples >= n_total:
        return list(range(n_total))
    if n_samples <= 0:
        raise ValueError(f"--n_samples must be positive, got {n_samples}")
    return sorted(random.Random(seed).sample(range(n_total), n_samples))
