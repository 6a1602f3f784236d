"""Property tests: for generated question/answer strings (unicode, long numbers, odd whitespace) the
teacher's answer tokens equal the student's, or building the example fails loudly. Never silently."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewshot_distill.config import DataConfig
from fewshot_distill.data.examples import build_example, collate_examples
from fewshot_distill.data.prompts import AlignmentError
from fewshot_distill.losses.alignment import check_aligned_token_ids, student_answer_window

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60)
numbers = st.integers(min_value=-10**30, max_value=10**30).map(lambda n: f"{n:,}" if n % 2 else str(n))
whitespace = st.sampled_from(["", " ", "  ", "\n", "\n\n", "\t", " \n "])


@st.composite
def rows(draw):
    n = draw(st.integers(min_value=3, max_value=5))
    out = []
    for _ in range(n):
        question = draw(whitespace) + draw(text) + draw(whitespace) + draw(numbers) + "?" + draw(whitespace)
        answer = draw(whitespace) + draw(text) + draw(whitespace) + f"\n#### {draw(numbers)}" + draw(whitespace)
        out.append({"question": question, "answer": answer})
    return out


def check_rows(tokenizer, generated_rows) -> int:
    """Build every row's example: aligned, or refused with AlignmentError. Returns how many were built."""
    cfg = DataConfig(num_fewshot_examples=2)
    examples = []
    for index in range(len(generated_rows)):
        try:
            example = build_example(tokenizer, generated_rows, index, cfg, seed=index, with_teacher=True)
        except AlignmentError:
            continue  # refused loudly: acceptable
        n = len(example.answer_ids)
        assert example.teacher_input_ids[-n:] == example.answer_ids == example.student_input_ids[-n:]
        examples.append(example)
    if examples:
        batch = collate_examples(examples, tokenizer.pad_token_id)
        _, mask, answer_ids = student_answer_window(batch["student_labels"])
        check_aligned_token_ids(batch["teacher_input_ids"], batch["teacher_attention_mask"].sum(1),
                                  answer_ids, mask)
    return len(examples)


def check_generated_rows(tokenizer):
    """Alignment over 40 generated row sets, and most rows are really built: a tokenizer or template that
    refused every row would otherwise pass without checking any alignment."""
    counts = {"rows": 0, "built": 0}

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(generated_rows=rows())
    def check(generated_rows):
        counts["rows"] += len(generated_rows)
        counts["built"] += check_rows(tokenizer, generated_rows)

    check()
    assert counts["built"] >= 0.9 * counts["rows"], counts


def test_alignment_holds_for_generated_rows_real_qwen3(qwen3_tokenizer):
    check_generated_rows(qwen3_tokenizer)


def test_alignment_holds_for_generated_rows_offline_tokenizer(offline_tokenizer):
    check_generated_rows(offline_tokenizer)


@pytest.fixture(scope="module")
def offline_tokenizer(tiny_model_dir):
    from fewshot_distill.models.student import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))
