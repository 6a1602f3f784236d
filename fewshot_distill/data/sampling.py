"""The training order: full optimizer steps across epoch ends, optionally grouped by length.

The training order (`StepStreamSampler`): seeded permutations per epoch, concatenated, cut into
optimizer steps of `per_device_batch x accumulation x processes` examples, as many as
`training.max_steps` needs; an epoch end falls inside a step instead of cutting one short.

A plain shuffled order puts a 900-token and a 2,300-token teacher sequence in one micro-batch and
pads the first to 2,300. With `lengths` the sampler sorts each step's examples by length, longest
first, so consecutive micro-batches of a step hold similar lengths.

Grouping keeps which examples each optimizer step sees and the order of steps.
What it changes: which examples share a micro-batch. The loss of a micro-batch is a token mean, so the
per-token weights inside a step shift slightly (as with any regrouping); the gradient is not
bit-identical to the plain order, it is the same data per step.

Grouping is enabled with `data.group_by_length=true` (off by default).
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


def step_stream(n_examples: int, step_examples: int, n_steps: int, seed: int,
                lengths: Sequence[int] | None = None) -> list[int]:
    """Example indices for `n_steps` optimizer steps of `step_examples` each.

    Epoch e is the permutation seeded with `seed + e`; the epochs are concatenated, so a step that
    crosses an epoch end takes the rest of one permutation and the start of the next (it may then
    hold one example twice). With `lengths`, each step's slice is sorted by length, longest first.
    """
    if n_examples <= 0:
        raise ValueError("step_stream needs at least one example")
    if step_examples <= 0:
        raise ValueError(f"step_examples must be > 0 (examples per optimizer step), got {step_examples}")
    needed = n_steps * step_examples
    order: list[int] = []
    epoch = 0
    while len(order) < needed:
        generator = torch.Generator().manual_seed(seed + epoch)
        order.extend(torch.randperm(n_examples, generator=generator).tolist())
        epoch += 1
    order = order[:needed]
    return order if lengths is None else length_grouped_order(order, lengths, step_examples)


class StepStreamSampler(Sampler[int]):
    """The whole run's examples in one pass: `step_stream` over `n_steps` optimizer steps.

    One pass for the whole run means the data loader never ends inside an optimizer step, so
    accelerate never forces an early gradient sync: every step sees a full global batch of
    `step_examples` (per-device batch x accumulation x processes), whatever the process count.
    Its consecutive micro-batches are dealt round-robin to the processes (accelerate's batch
    sharding), so step s on every rank draws from the stream's slice s.
    """

    def __init__(self, n_examples: int, step_examples: int, n_steps: int, seed: int = 0,
                 lengths: Sequence[int] | None = None):
        if lengths is not None and len(lengths) != n_examples:
            raise ValueError(f"{len(lengths)} lengths for {n_examples} examples")
        step_stream(n_examples, step_examples, 0, seed)  # argument checks
        self.n_examples, self.step_examples, self.n_steps = n_examples, step_examples, n_steps
        self.seed = seed
        self.lengths = None if lengths is None else list(lengths)

    def __len__(self) -> int:
        return self.n_steps * self.step_examples

    def __iter__(self) -> Iterator[int]:
        return iter(step_stream(self.n_examples, self.step_examples, self.n_steps, self.seed, self.lengths))
