"""Length-grouped sampling: less teacher padding, the same examples in every optimizer step.

A plain shuffled sampler puts a 900-token and a 2,300-token teacher sequence in one micro-batch and
pads the first to 2,300. `LengthGroupedSampler` draws the same seeded permutation per epoch, cuts it
into groups of one optimizer step (`per_device_batch x accumulation x processes` examples) and sorts
each group by length, longest first. Consecutive micro-batches of a group then hold similar lengths.

What stays the same: which examples each optimizer step sees, and the epoch order of steps.
What changes: which examples share a micro-batch. The loss of a micro-batch is a token mean, so the
per-token weights inside a step shift slightly (as with any regrouping); the gradient is not
bit-identical to the plain order, it is the same data per step.

Enabled with `data.group_by_length=true` (off by default).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def length_grouped_order(permutation: Sequence[int], lengths: Sequence[int], group_size: int) -> list[int]:
    """Each consecutive `group_size` slice of `permutation`, sorted by length (longest first, stable)."""
    if group_size <= 0:
        raise ValueError(f"group_size must be > 0 (examples per optimizer step), got {group_size}")
    order = []
    for begin in range(0, len(permutation), group_size):
        group = list(permutation[begin: begin + group_size])
        order.extend(sorted(group, key=lambda index: -lengths[index]))
    return order


def padded_tokens(order: Sequence[int], lengths: Sequence[int], batch_size: int) -> int:
    """Tokens a batch-major right-padded run over `order` computes (drop_last batches)."""
    total = 0
    for begin in range(0, len(order) - batch_size + 1, batch_size):
        total += batch_size * max(lengths[i] for i in order[begin: begin + batch_size])
    return total


class LengthGroupedSampler(Sampler[int]):
    """Seeded per-epoch shuffle, then sort within each optimizer-step group by length."""

    def __init__(self, lengths: Sequence[int], group_size: int, seed: int = 0):
        if len(lengths) == 0:
            raise ValueError("LengthGroupedSampler needs at least one example length")
        if group_size <= 0:
            raise ValueError(f"group_size must be > 0 (examples per optimizer step), got {group_size}")
        self.lengths = list(lengths)
        self.group_size = group_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(len(self.lengths), generator=generator).tolist()
        return iter(length_grouped_order(permutation, self.lengths, self.group_size))
