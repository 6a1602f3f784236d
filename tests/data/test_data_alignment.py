"""Prompt building and teacher/student alignment on real GSM8K rows with the real Qwen3 tokenizer."""

import pytest
import torch

from fewshot_distill.config import DataConfig
from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.data.examples import build_example, build_examples, collate_examples, load_task_rows
from fewshot_distill.tasks import get_task, validate_rows
from fewshot_distill.data.prompts import AlignmentError, Shot, render_answer, render_prompt, tokenize_prompt_and_answer
from fewshot_distill.losses.alignment import check_aligned_token_ids, student_answer_window
from tests.conftest import GSM8K_DIR, SMOKE_DATA

EMPTY_THINK = "<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def real_examples(qwen3_tokenizer, gsm8k_train_rows):
    cfg = DataConfig(path=str(GSM8K_DIR))
    examples, stats = build_examples(gsm8k_train_rows, qwen3_tokenizer, cfg, seed=42, with_teacher=True,
                                     indices=range(0, len(gsm8k_train_rows), 75))  # 100 rows across the split
    return examples, stats


def test_rendered_prompts_disable_thinking_and_end_with_the_answer_turn(qwen3_tokenizer, gsm8k_train_rows):
    row = gsm8k_train_rows[0]
    prompt = render_prompt(qwen3_tokenizer, row["question"])
    assert prompt == (f"<|im_start|>user\nQuestion: {row['question']}<|im_end|>\n"
                      f"<|im_start|>assistant\n{EMPTY_THINK}")
    assert render_answer(qwen3_tokenizer, row["question"], row["answer"]) == row["answer"] + "<|im_end|>"
    shots = [Shot(r["question"], r["answer"]) for r in gsm8k_train_rows[1:3]]
    teacher_prompt = render_prompt(qwen3_tokenizer, row["question"], shots)
    # shots are earlier chat turns without think blocks; only the final answer turn has the empty block
    assert teacher_prompt.count("<think>") == 1 and teacher_prompt.endswith(prompt)
    assert f"Question: {shots[0].question}<|im_end|>\n<|im_start|>assistant\n{shots[0].answer}<|im_end|>" in teacher_prompt


def test_teacher_suffix_ids_equal_student_answer_ids(real_examples, qwen3_tokenizer):
    examples, stats = real_examples
    assert stats.examples == 100 and stats.teacher_shots_dropped == 0
    for example in examples:
        n = len(example.answer_ids)
        assert example.teacher_input_ids[-n:] == example.answer_ids
        assert example.student_input_ids[-n:] == example.answer_ids
        assert example.n_shots == 8
        assert example.answer_ids[-1] == qwen3_tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert qwen3_tokenizer.decode(example.student_input_ids[:example.student_prompt_len]).endswith(EMPTY_THINK)


def test_labels_mask_exactly_the_prompt_and_padding(real_examples, qwen3_tokenizer):
    examples, _ = real_examples
    batch = collate_examples(examples[:4], qwen3_tokenizer.pad_token_id)
    for row, example in enumerate(examples[:4]):
        labels = batch["student_labels"][row]
        length = len(example.student_input_ids)
        assert (labels[:example.student_prompt_len] == IGNORE_INDEX).all()
        assert labels[example.student_prompt_len:length].tolist() == example.answer_ids
        assert (labels[length:] == IGNORE_INDEX).all()
        assert int(batch["student_attention_mask"][row].sum()) == length
        assert int(batch["teacher_attention_mask"][row].sum()) == len(example.teacher_input_ids)
    # the batch-level check used every training step agrees
    _, mask, answer_ids = student_answer_window(batch["student_labels"])
    check_aligned_token_ids(batch["teacher_input_ids"], batch["teacher_attention_mask"].sum(1), answer_ids, mask)


def test_long_teacher_sequences_drop_shots_not_answer_tokens(qwen3_tokenizer, gsm8k_train_rows):
    full = build_example(qwen3_tokenizer, gsm8k_train_rows, 7, DataConfig(), seed=42, with_teacher=True)
    limit = len(full.teacher_input_ids) - 1
    cut = build_example(qwen3_tokenizer, gsm8k_train_rows, 7, DataConfig(max_seq_len_teacher=limit), seed=42,
                        with_teacher=True)
    assert cut.n_shots < 8 and len(cut.teacher_input_ids) <= limit
    assert cut.teacher_input_ids[-len(cut.answer_ids):] == full.answer_ids
    with pytest.raises(ValueError, match="max_seq_len_teacher"):
        build_example(qwen3_tokenizer, gsm8k_train_rows, 7, DataConfig(max_seq_len_teacher=50), seed=42,
                      with_teacher=True)


def test_student_sequence_longer_than_limit_is_an_error_not_a_truncation(qwen3_tokenizer, gsm8k_train_rows):
    with pytest.raises(ValueError, match="answer is never truncated"):
        build_example(qwen3_tokenizer, gsm8k_train_rows, 0, DataConfig(max_seq_len_student=20), seed=0,
                      with_teacher=False)


def test_tokenizer_merging_across_the_boundary_is_an_alignment_error(qwen3_tokenizer):
    # A prompt ending in a space makes BPE merge " Natalia" across the boundary.
    with pytest.raises(AlignmentError, match="merges tokens across the prompt/answer boundary"):
        tokenize_prompt_and_answer(qwen3_tokenizer, "Question: how many?\nAnswer: ", "Natalia sold 48")


def test_template_that_ignores_the_thinking_flag_is_an_alignment_error(qwen3_tokenizer):
    import copy

    tokenizer = copy.deepcopy(qwen3_tokenizer)
    # A template whose generation prompt ignores enable_thinking: the trained answer turn would differ.
    tokenizer.chat_template = qwen3_tokenizer.chat_template.replace(
        "enable_thinking is defined and enable_thinking is false", "false")
    with pytest.raises(AlignmentError, match="thinking flag"):
        render_answer(tokenizer, "What is 1+1?", "2\n#### 2")


def test_plain_text_format_without_chat_template(qwen3_tokenizer, gsm8k_train_rows):
    import copy

    tokenizer = copy.deepcopy(qwen3_tokenizer)
    tokenizer.chat_template = None
    example = build_example(tokenizer, gsm8k_train_rows[:20], 0, DataConfig(num_fewshot_examples=2), seed=0,
                            with_teacher=True)
    text = tokenizer.decode(example.teacher_input_ids)
    assert text.count("Question: ") == 3 and text.endswith(gsm8k_train_rows[0]["answer"] + tokenizer.eos_token)
    assert example.teacher_input_ids[-len(example.answer_ids):] == example.answer_ids


def test_invalid_rows_error_lists_them_or_are_skipped_and_counted():
    rows = [{"question": "q1", "answer": "a\n#### 1"}, {"question": "", "answer": "#### 2"},
            {"question": "q3", "answer": "no marker"}, {"question": "q4"}]
    with pytest.raises(ValueError, match=r"3 invalid rows.*row 1: no question; row 2: answer has no '####'"):
        validate_rows(rows, get_task("gsm8k"))
    kept, skipped = validate_rows(rows, get_task("gsm8k"), policy="skip")
    assert kept == rows[:1] and skipped == 3


def test_missing_data_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no train.jsonl"):
        load_task_rows(DataConfig(path=str(tmp_path / "missing")), "train")


def test_local_rows_load_through_datasets():
    rows = load_task_rows(DataConfig(path=str(SMOKE_DATA)), "train")
    assert len(rows) > 10 and set(rows[0]) == {"question", "answer"}


def test_collate_pads_right_regardless_of_tokenizer_padding_side(real_examples):
    examples, _ = real_examples
    batch = collate_examples(examples[:3], pad_token_id=0)
    lengths = batch["teacher_attention_mask"].sum(1)
    for row in range(3):
        assert batch["teacher_attention_mask"][row, :lengths[row]].all()
        assert not batch["teacher_attention_mask"][row, lengths[row]:].any()
    assert batch["example_index"].tolist() == [e.index for e in examples[:3]]
    assert batch["student_input_ids"].dtype == torch.long
