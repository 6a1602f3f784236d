"""Evaluation subset and prompts: determinism, shots from the training split, thinking disabled."""

from __future__ import annotations

import pytest

from fewshot_distill.data.subset import select_subset
from fewshot_distill.eval.prompts import build_prompts, max_model_len, rows_fingerprint, tokenize_prompts

EMPTY_THINK = "<think>\n\n</think>\n\n"


def rows(prefix, n):
    return [{"question": f"{prefix} question {i}: what is {i} + 1?",
             "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"} for i in range(n)]


def test_subset_is_seeded_sorted_and_full_when_large_enough():
    first = select_subset(1319, 100, seed=42)
    assert first == select_subset(1319, 100, seed=42)
    assert first == sorted(first) and len(set(first)) == 100 and all(0 <= i < 1319 for i in first)
    assert first != select_subset(1319, 100, seed=43)
    assert select_subset(1319, 1319, seed=42) == list(range(1319))
    assert select_subset(1319, None, seed=42) == list(range(1319))
    assert select_subset(10, 50, seed=0) == list(range(10))
    with pytest.raises(ValueError, match="empty"):
        select_subset(0, 5, seed=0)


def test_icl_prompts_with_real_qwen3_tokenizer(qwen3_tokenizer):
    train, test = rows("train", 40), rows("test", 6)
    indices = [1, 4, 5]
    prompts = build_prompts(qwen3_tokenizer, test, indices, train, n_shots=8, seed=42)
    zero_shot = build_prompts(qwen3_tokenizer, test, indices, train, n_shots=0, seed=42)
    for index, prompt, plain in zip(indices, prompts, zero_shot):
        # thinking disabled: the generation prompt ends with the empty think block
        assert prompt.endswith("<|im_start|>assistant\n" + EMPTY_THINK)
        assert plain.endswith("<|im_start|>assistant\n" + EMPTY_THINK)
        # the test question appears once, as the last user turn; shots are training rows in chat turns
        assert prompt.count(test[index]["question"]) == 1
        assert prompt.endswith(plain.split("<|im_start|>user\n", 1)[1])
        assert prompt.count("<|im_start|>user\n") == 9 and prompt.count("<|im_start|>assistant\n") == 9
        assert prompt.count("train question") == 8 and "test question" in prompt
        assert plain.count("<|im_start|>user\n") == 1
    assert build_prompts(qwen3_tokenizer, test, indices, train, n_shots=8, seed=42) == prompts


def test_real_gsm8k_8shot_prompts_fit_the_computed_context(qwen3_tokenizer, gsm8k_train_rows):
    test = gsm8k_train_rows[:5]  # any GSM8K-shaped rows serve as "test" here
    prompts = build_prompts(qwen3_tokenizer, test, range(5), gsm8k_train_rows[5:], n_shots=8, seed=42)
    ids = tokenize_prompts(qwen3_tokenizer, prompts)
    longest = max(len(x) for x in ids)
    assert 800 < longest < 3000  # 8 GSM8K shots are ~1-2.5k Qwen3 tokens
    context = max_model_len(ids, max_new_tokens=512)
    assert context >= longest + 512 and context % 64 == 0 and context - (longest + 512) < 64


def test_fingerprint_changes_with_the_data():
    data = rows("t", 3)
    assert rows_fingerprint(data) == rows_fingerprint([dict(r) for r in data])
    changed = [dict(r) for r in data]
    changed[1]["answer"] += "0"
    assert rows_fingerprint(changed) != rows_fingerprint(data)
