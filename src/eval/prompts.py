"""Evaluation inputs: the test subset, the few-shot context of `icl_8shot`, and the prompt token ids.

Every condition reads the same prompts as training's student (`render_prompt`: Qwen3 chat template,
enable_thinking=False, so the generation prompt ends with an empty think block); `icl_8shot` adds
8 shots from the TRAINING split as earlier chat turns, the teacher's format. Shots for test example
i are drawn with `random.Random(seed + i)`, so every run and every backend sees the same prompts.

    indices = select_subset(len(test_rows), n_samples=200, seed=42)
    prompt_ids = build_prompt_ids(tokenizer, test_rows, indices, train_rows, n_shots=8, seed=42)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from typing import Sequence

from src.data.prompts import Shot, render_prompt


def select_subset(n_total: int, n_samples: int | None, seed: int) -> list[int]:
    """Sorted test indices: all of them when n_samples is None or >= n_total, else a seeded sample."""
    if n_total <= 0:
        raise ValueError("The test split is empty; check data.path / data.test_split")
    if n_samples is None or n_samples >= n_total:
        return list(range(n_total))
    if n_samples <= 0:
        raise ValueError(f"--n_samples must be positive, got {n_samples}")
    return sorted(random.Random(seed).sample(range(n_total), n_samples))


def _normalise(question: str) -> str:
    return " ".join(question.split())


def question_index(rows: Sequence[dict]) -> dict[str, list[int]]:
    """Normalised question text -> indices of the rows that ask it (to keep a test question out of its shots)."""
    index = defaultdict(list)
    for i, row in enumerate(rows):
        index[_normalise(row["question"])].append(i)
    return dict(index)


def icl_shot_indices(train_rows: Sequence[dict], test_question: str, test_index: int, n_shots: int,
                     seed: int, train_questions: dict[str, list[int]] | None = None) -> list[int]:
    """Training rows used as shots for one test example: deterministic in (seed, test_index).

    Training rows that ask the test question itself (GSM8K has none, other data might) are never
    drawn: the sample is enlarged by their number and they are removed from it.
    """
    if train_questions is None:
        train_questions = question_index(train_rows)
    excluded = set(train_questions.get(_normalise(test_question), ()))
    available = len(train_rows) - len(excluded)
    if n_shots > available:
        raise ValueError(f"Cannot draw {n_shots} shots from {available} usable training rows; lower "
                         "data.num_fewshot_examples or use a larger training split.")
    rng = random.Random(seed + test_index)
    drawn = rng.sample(range(len(train_rows)), n_shots + len(excluded))
    return [i for i in drawn if i not in excluded][:n_shots]


def build_prompts(tokenizer, test_rows: Sequence[dict], indices: Sequence[int], train_rows: Sequence[dict],
                  n_shots: int, seed: int) -> list[str]:
    """Prompt text for each test index (0-shot, or `n_shots` training examples as earlier turns)."""
    train_questions = question_index(train_rows) if n_shots else {}
    prompts = []
    for test_index in indices:
        question = test_rows[test_index]["question"]
        shots = ()
        if n_shots:
            shot_ids = icl_shot_indices(train_rows, question, test_index, n_shots, seed, train_questions)
            shots = [Shot(train_rows[i]["question"], train_rows[i]["answer"]) for i in shot_ids]
        prompts.append(render_prompt(tokenizer, question, shots))
    return prompts


def tokenize_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids both backends generate from (the chat template already holds the special tokens)."""
    return [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]


def max_model_len(prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, multiple: int = 64) -> int:
    """Context the engine needs: the longest prompt plus the generation budget, rounded up."""
    if not prompt_ids:
        raise ValueError("No prompts to evaluate")
    needed = max(len(ids) for ids in prompt_ids) + max_new_tokens
    return -(-needed // multiple) * multiple


def rows_fingerprint(rows: Sequence[dict]) -> str:
    """sha256 of the rows' question/answer text: a results file is only resumed on the same data."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row["question"], row["answer"]]).encode())
    return digest.hexdigest()
