"""The one shot selector (fewshot_distill/data/shots.py): both modes, exclusion, determinism, and today's shots kept."""

from __future__ import annotations

import pytest

from fewshot_distill.config import ConfigError, DataConfig
from fewshot_distill.data.shots import (evaluation_shot_indices, fixed_shot_indices, fixed_shot_order, question_index,
                            select_shot_indices, training_shot_indices)


def rows(n: int, distinct: int | None = None) -> list[dict]:
    distinct = distinct or n
    return [{"question": f"question {i % distinct}: what is {i % distinct} + 1?", "answer": "#### 1"}
            for i in range(n)]


# Shots of the former `sample_shot_indices` (training) and `icl_shot_indices` (evaluation), recorded
# before they were replaced: the teacher cache, resume and published runs depend on these exact rows.
PINNED_TRAINING = {
    (7473, 0, 8, 42): [5238, 912, 204, 6074, 2253, 2006, 1828, 1143],
    (7473, 7472, 8, 42): [140, 898, 6965, 395, 5926, 3196, 2112, 1748],
    (100, 3, 8, 1): [30, 38, 13, 92, 50, 61, 19, 11],
    (10, 5, 9, 0): [9, 4, 6, 7, 8, 0, 1, 3, 2],
}


@pytest.mark.parametrize("args, expected", PINNED_TRAINING.items())
def test_per_example_training_shots_equal_the_former_sampler(args, expected):
    n_rows, index, n_shots, seed = args
    assert training_shot_indices(n_rows, index, n_shots, seed, "per_example") == expected


def test_per_example_evaluation_shots_equal_the_former_icl_sampler():
    train = rows(120, distinct=37)  # question "question 4: ..." is asked by rows 4, 41, 78, 115
    assert evaluation_shot_indices(train, train[4]["question"], 11, 8, 42) == [109, 113, 27, 58, 64, 91, 61, 119]
    assert evaluation_shot_indices(train, "another question", 1318, 8, 42) == [102, 81, 104, 27, 59, 86, 29, 32]


@pytest.mark.parametrize("mode", ["per_example", "fixed"])
def test_training_shots_are_deterministic_distinct_and_never_the_example(mode):
    for index in range(100):
        shots = training_shot_indices(100, index, 8, seed=42, mode=mode)
        assert index not in shots and len(set(shots)) == 8 and all(0 <= i < 100 for i in shots)
        assert shots == training_shot_indices(100, index, 8, seed=42, mode=mode)
    assert training_shot_indices(100, 3, 8, seed=1, mode=mode) != training_shot_indices(100, 3, 8, seed=2, mode=mode)
    with pytest.raises(ValueError, match="Cannot draw 8 shots"):
        training_shot_indices(5, 0, 8, seed=0, mode=mode)


@pytest.mark.parametrize("mode", ["per_example", "fixed"])
def test_evaluation_never_shows_a_row_asking_the_test_question(mode):
    train = rows(10)
    asked = "  " + train[4]["question"].replace(" ", "  ")  # normalised whitespace still matches
    for test_index in range(100):
        shots = evaluation_shot_indices(train, asked, test_index, 8, seed=0, mode=mode)
        assert 4 not in shots and len(set(shots)) == 8
    with pytest.raises(ValueError, match="Cannot draw 10 shots"):
        evaluation_shot_indices(train, asked, 0, 10, seed=0, mode=mode)
    # duplicates in the training split: every row asking the question is excluded
    duplicated = rows(60, distinct=20)
    for test_index in range(20):
        question = duplicated[test_index]["question"]
        shots = evaluation_shot_indices(duplicated, question, test_index, 8, seed=3, mode=mode)
        assert not set(shots) & set(question_index(duplicated)[" ".join(question.split())])


def test_per_example_shots_differ_between_examples():
    assert training_shot_indices(1000, 1, 8, 42) != training_shot_indices(1000, 2, 8, 42)


def test_fixed_shots_are_shared_and_a_member_gets_the_next_row_in_its_place():
    n_rows, k, seed = 50, 8, 7
    fixed = fixed_shot_indices(n_rows, k, seed)
    order = fixed_shot_order(n_rows, seed)
    assert fixed == list(order[:k]) and len(set(fixed)) == k
    outsiders = [i for i in range(n_rows) if i not in fixed]
    for index in outsiders:
        assert training_shot_indices(n_rows, index, k, seed, "fixed") == fixed
    for position, member in enumerate(fixed):
        shots = training_shot_indices(n_rows, member, k, seed, "fixed")
        # same shots, same order, except the member's own slot, which holds the permutation's row k (its first spare)
        assert shots == fixed[:position] + [order[k]] + fixed[position + 1:]
    # evaluation uses the same fixed set (a test question not in training keeps it whole)
    train = rows(n_rows)
    for test_index in range(30):
        assert evaluation_shot_indices(train, "unseen question", test_index, k, seed, "fixed") == fixed


def test_fixed_replacements_skip_excluded_rows():
    order = fixed_shot_order(20, 0)
    fixed = list(order[:3])
    # exclude two shots and the first spare: the two slots take spares 2 and 3 in order
    excluded = {fixed[0], fixed[2], order[3]}
    assert select_shot_indices(20, 0, 3, 0, excluded, "fixed") == [order[4], fixed[1], order[5]]


def test_zero_shots_and_unknown_mode():
    assert training_shot_indices(5, 0, 0, seed=0, mode="fixed") == []
    assert training_shot_indices(5, 0, 0, seed=0) == []
    with pytest.raises(ValueError, match="data.shot_sampling"):
        training_shot_indices(5, 0, 2, seed=0, mode="random")


def test_config_validates_shot_sampling():
    assert DataConfig().shot_sampling == "per_example"
    assert DataConfig(shot_sampling="fixed").shot_sampling == "fixed"
    with pytest.raises(ConfigError, match="data.shot_sampling"):
        DataConfig(shot_sampling="random")
