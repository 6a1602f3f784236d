"""Evaluation inputs: the test subset, the few-shot context of `icl_{k}shot`, and the prompt token ids.

Every condition reads the same prompts as training's student (`render_prompt`: Qwen3 chat template,
enable_thinking=False, so the generation prompt ends with an empty think block); `icl_{k}shot` adds
k shots from the TRAINING split as earlier chat turns, the teacher's format. Shots come from the
shot selector training uses (fewshot_distill/data/shots.py, `data.shot_sampling`): per example with
`random.Random(seed + i)` for test example i, or the one fixed set; never a training row asking the
test question. Every run and every backend sees the same prompts.

    indices = select_subset(len(test_rows), n_samples=200, seed=42)   # fewshot_distill/data/subset.py
    texts = build_prompts(tokenizer, test_rows, indices, train_rows, n_shots=8, seed=42)
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

from fewshot_distill.data.prompts import Shot, render_prompt
from fewshot_distill.data.shots import evaluation_shot_indices, question_index
from fewshot_distill.tasks import Task


def build_prompts(tokenizer, test_rows: Sequence[dict], indices: Sequence[int], train_rows: Sequence[dict],
                  n_shots: int, seed: int, shot_sampling: str = "per_example", task: Task | None = None
                  ) -> list[str]:
    """Prompt text for each test index (0-shot, or `n_shots` training examples as earlier turns; task None = gsm8k)."""
    train_questions = question_index(train_rows) if n_shots else {}
    prompts = []
    for test_index in indices:
        question = test_rows[test_index]["question"]
        shots = ()
        if n_shots:
            shot_ids = evaluation_shot_indices(train_rows, question, test_index, n_shots, seed,
                                               shot_sampling, train_questions)
            shots = [Shot(train_rows[i]["question"], train_rows[i]["answer"]) for i in shot_ids]
        prompts.append(render_prompt(tokenizer, question, shots, task=task))
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
