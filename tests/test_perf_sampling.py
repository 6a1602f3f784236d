"""Length-grouped sampler: the same examples in every optimizer step, less teacher padding."""

from __future__ import annotations

import random

import pytest

from src.data.sampling import LengthGroupedSampler, length_grouped_order, padded_tokens


def test_groups_keep_their_examples_and_are_sorted_longest_first():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    order = length_grouped_order([0, 1, 2, 3, 4, 5, 6], lengths, group_size=3)
    assert order == [2, 0, 1, 4, 3, 5, 6]
    for begin in range(0, 7, 3):
        assert set(order[begin: begin + 3]) == set(range(7)[begin: begin + 3])


def test_ties_keep_the_shuffled_order():
    assert length_grouped_order([3, 1, 2, 0], [4, 4, 4, 4], group_size=4) == [3, 1, 2, 0]


def test_sampler_matches_a_seeded_permutation_step_by_step():
    rng = random.Random(0)
    lengths = [rng.randint(800, 2400) for _ in range(100)]
    sampler = LengthGroupedSampler(lengths, group_size=32, seed=7)
    first_epoch = list(sampler)
    assert sorted(first_epoch) == list(range(100)) and len(sampler) == 100
    assert list(sampler) == first_epoch  # deterministic
    sampler.set_epoch(1)
    second_epoch = list(sampler)
    assert second_epoch != first_epoch and sorted(second_epoch) == list(range(100))


def test_grouping_reduces_padding():
    rng = random.Random(1)
    lengths = [rng.randint(800, 2400) for _ in range(320)]
    plain = padded_tokens(range(320), lengths, batch_size=4)
    grouped = padded_tokens(length_grouped_order(range(320), lengths, 32), lengths, batch_size=4)
    assert sum(lengths) <= grouped < plain


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="group_size"):
        LengthGroupedSampler([1, 2], group_size=0)
    with pytest.raises(ValueError, match="at least one"):
        LengthGroupedSampler([], group_size=4)
