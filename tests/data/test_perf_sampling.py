"""Training order: full optimizer steps across epoch ends (step_stream), length grouping, padding."""

from __future__ import annotations

import random

import pytest
import torch

from fewshot_distill.data.sampling import StepStreamSampler, length_grouped_order, padded_tokens, step_stream


def test_groups_keep_their_examples_and_are_sorted_longest_first():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    order = length_grouped_order([0, 1, 2, 3, 4, 5, 6], lengths, group_size=3)
    assert order == [2, 0, 1, 4, 3, 5, 6]
    for begin in range(0, 7, 3):
        assert set(order[begin: begin + 3]) == set(range(7)[begin: begin + 3])


def test_ties_keep_the_shuffled_order():
    assert length_grouped_order([3, 1, 2, 0], [4, 4, 4, 4], group_size=4) == [3, 1, 2, 0]


def test_stream_continues_across_epochs_in_full_steps():
    stream = step_stream(10, step_examples=4, n_steps=7, seed=3)
    assert len(stream) == 28
    first, second = stream[:10], stream[10:20]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second  # epochs 0 and 1
    assert stream[:10] == torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    assert stream[20:28] == torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()[:8]
    # a resumed or longer run sees the same steps first
    assert step_stream(10, 4, 9, seed=3)[:28] == stream


def test_sampler_serves_exactly_max_steps_full_steps_with_length_groups():
    rng = random.Random(0)
    lengths = [rng.randint(800, 2400) for _ in range(100)]
    sampler = StepStreamSampler(100, step_examples=32, n_steps=5, seed=7, lengths=lengths)
    order = list(sampler)
    assert len(order) == len(sampler) == 160 and list(sampler) == order  # deterministic
    plain = step_stream(100, 32, 5, seed=7)
    for begin in range(0, 160, 32):
        step = order[begin: begin + 32]
        assert sorted(step) == sorted(plain[begin: begin + 32])
        assert [lengths[i] for i in step] == sorted((lengths[i] for i in step), reverse=True)


def test_grouping_reduces_padding():
    rng = random.Random(1)
    lengths = [rng.randint(800, 2400) for _ in range(320)]
    plain = padded_tokens(range(320), lengths, batch_size=4)
    grouped = padded_tokens(length_grouped_order(range(320), lengths, 32), lengths, batch_size=4)
    assert sum(lengths) <= grouped < plain


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="step_examples"):
        StepStreamSampler(2, step_examples=0, n_steps=3)
    with pytest.raises(ValueError, match="at least one"):
        StepStreamSampler(0, step_examples=4, n_steps=3)
    with pytest.raises(ValueError, match="lengths"):
        StepStreamSampler(3, step_examples=4, n_steps=3, lengths=[1, 2])
