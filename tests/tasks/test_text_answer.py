"""`task.answer_type: text` (fewshot_distill/tasks/text.py through fewshot_distill/tasks/jsonl.py): the user turn is the question as is
(or the template's), the first non-empty output line is the answer, exact match after case-folding; a config's
wrong field name is one line naming the fields the records have."""

from __future__ import annotations

import json
import re

import pytest

from fewshot_distill.config import ConfigError, load_config
from fewshot_distill.data.examples import load_task_rows
from fewshot_distill.data.prompts import build_messages, render_answer, render_prompt, tokenize_prompt_and_answer
from fewshot_distill.eval.prompts import build_prompts
from fewshot_distill.tasks import Extraction, InvalidRowsError, task_of
from fewshot_distill.tasks.text import TextAnswerFormat, first_line, template_problem, text_answers_match
from tests.conftest import REPO_ROOT

BASE_CONFIG = REPO_ROOT / "configs" / "base.yaml"
WORDS = ["apple", "river", "cat", "house", "green", "music", "orange", "table", "window", "zebra", "lemon",
         "night"]


def text_task_overrides(folder, *extra: str) -> list[str]:
    return ["data.task=jsonl", f"data.path={folder}", "task.question_field=input", "task.answer_field=target",
            "task.answer_type=text", *extra]


@pytest.fixture
def first_letter_folder(tmp_path):
    """A first-letter task: train rows from WORDS[1:], test rows ["apple", "zebra"] (zebra is in train too)."""
    for split, words in (("train", WORDS[1:]), ("test", ["apple", "zebra"])):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"input": w, "target": w[0]}) + "\n"
                                                         for w in words))
    return tmp_path


@pytest.mark.parametrize("text, line", [
    ("a", "a"),
    ("  Paris  \nThe capital of France is Paris.", "Paris"),
    ("\n\n \t\nRIVER\nmore", "RIVER"),
    ("seven.", "seven."),              # no punctuation is dropped: exact match
    ("", None),
    (" \n\t\n", None),
])
def test_first_non_empty_line_is_the_answer_strict_and_flexible(text, line):
    assert first_line(text) == line
    assert TextAnswerFormat().extract(text) == Extraction(strict=line, flexible=line)


@pytest.mark.parametrize("predicted, gold, match", [
    ("Paris", "Paris", True),
    ("paris", "Paris", True),
    ("RIVER", "river", True),
    (" river ", "river\n", True),
    ("STRASSE", "straße", True),        # case-folding, not lower(): ß folds to ss
    ("Paris.", "Paris", False),
    ("Paris, France", "Paris", False),
    ("a", "b", False),
    (None, "a", False),
])
def test_exact_match_after_case_folding(predicted, gold, match):
    assert text_answers_match(predicted, gold) is match
    assert TextAnswerFormat().answers_match(predicted, gold) is match


def test_template_must_hold_only_the_question_field():
    assert template_problem("Word: {question}\nFirst letter:") is None
    assert "found ['word']" in template_problem("Word: {word}")
    assert "found none" in template_problem("no field")
    assert "not a format string" in template_problem("Word: {question")
    assert TextAnswerFormat("Word: {question} {{braces}}").format_question("apple") == "Word: apple {braces}"


def test_text_rows_gold_and_problems(first_letter_folder):
    cfg = load_config(BASE_CONFIG, text_task_overrides(first_letter_folder))
    task = task_of(cfg.data)
    assert task.to_row({"input": "apple", "target": " a "}) == {"question": "apple", "answer": " a ", "gold": "a"}
    assert task.to_row({"input": 7, "target": 10}) == {"question": "7", "answer": "10", "gold": "10"}
    assert task.row_problem({"question": "apple", "answer": "a", "gold": "a"}) is None
    assert task.row_problem({"question": "apple", "answer": "a\nb", "gold": "a\nb"}).startswith("answer spans")
    assert task.row_problem(task.to_row({"input": "apple"})) == "no answer"
    assert task.row_gold(task.to_row({"input": "apple", "target": "a"})) == "a"
    rows = load_task_rows(cfg.data, "test")
    assert [(r["question"], task.row_gold(r)) for r in rows] == [("apple", "a"), ("zebra", "z")]


@pytest.mark.parametrize("overrides, message", [
    (['task.template="Word: {word}"'], "task.template='Word: {word}': its fields must be {question} alone"),
    (["task.answer_type=number", 'task.template="Q: {question}"'], "task.template is for task.answer_type=text"),
    (["task.answer_field=null", "task.solution_field=target"], "task.answer_type=text reads task.answer_field"),
])
def test_text_task_config_errors_are_one_line(first_letter_folder, overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(BASE_CONFIG, text_task_overrides(first_letter_folder, *overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_zero_shot_prompt_is_the_bare_question_in_the_real_qwen3_template(qwen3_tokenizer, first_letter_folder):
    """The user turn is the record's text and nothing else (no instruction, no `Question:`); the answer
    is the gold line and the end-of-turn marker, token for token."""
    cfg = load_config(BASE_CONFIG, text_task_overrides(first_letter_folder))
    task = task_of(cfg.data)
    assert build_messages("apple", task=task) == [{"role": "user", "content": "apple"}]
    prompt = render_prompt(qwen3_tokenizer, "apple", task=task)
    assert prompt == "<|im_start|>user\napple<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    answer = render_answer(qwen3_tokenizer, "apple", "a", task=task)
    assert answer == "a<|im_end|>"
    prompt_ids, answer_ids = tokenize_prompt_and_answer(qwen3_tokenizer, prompt, answer)
    # <|im_start|> user \n apple <|im_end|> \n <|im_start|> assistant \n <think> \n\n </think> \n\n | a <|im_end|>
    assert prompt_ids == [151644, 872, 198, 22377, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271]
    assert answer_ids == [64, 151645]


def test_template_writes_the_user_turn_of_question_and_shots(qwen3_tokenizer, first_letter_folder):
    cfg = load_config(BASE_CONFIG, text_task_overrides(first_letter_folder, 'task.template="Word: {question}"'))
    rows = load_task_rows(cfg.data, "train")
    prompt = build_prompts(qwen3_tokenizer, load_task_rows(cfg.data, "test"), [0], rows, 2, seed=0,
                           task=task_of(cfg.data))[0]
    users = re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", prompt)
    assert len(users) == 3 and all(u.startswith("Word: ") for u in users) and users[-1] == "Word: apple"


def test_eight_shot_prompt_takes_its_shots_from_train_jsonl(qwen3_tokenizer, first_letter_folder):
    """icl_8shot's rows: 8 user/assistant pairs from train.jsonl (question as is, gold line as the answer),
    then the bare test question; never the test question itself as a shot (zebra is in both files)."""
    cfg = load_config(BASE_CONFIG, text_task_overrides(first_letter_folder))
    task = task_of(cfg.data)
    train_rows, test_rows = load_task_rows(cfg.data, "train"), load_task_rows(cfg.data, "test")
    prompts = build_prompts(qwen3_tokenizer, test_rows, [0, 1], train_rows, 8, seed=42, task=task)
    for prompt, test_word in zip(prompts, ["apple", "zebra"]):
        turns = re.findall(r"<\|im_start\|>(user|assistant)\n(.*?)(?:<\|im_end\|>|\Z)", prompt, flags=re.S)
        shots = list(zip(turns[0:16:2], turns[1:16:2]))
        assert len(turns) == 18 and len(shots) == 8
        for (user, question), (assistant, answer) in shots:
            assert (user, assistant) == ("user", "assistant")
            assert question in WORDS[1:] and question != test_word and answer == question[0]
        assert len({question for (_, question), _ in shots}) == 8
        assert turns[16] == ("user", test_word) and turns[17] == ("assistant", "<think>\n\n</think>\n\n")
        assert "Question:" not in prompt


@pytest.mark.parametrize("key, value", [("task.question_field", "word"), ("task.answer_field", "letter")])
def test_a_field_no_record_has_is_named_with_the_fields_records_have(first_letter_folder, key, value):
    cfg = load_config(BASE_CONFIG, text_task_overrides(first_letter_folder, f"{key}={value}"))
    with pytest.raises(InvalidRowsError) as caught:
        load_task_rows(cfg.data, "test")
    text = str(caught.value)
    assert text == (f"{first_letter_folder / 'test.jsonl'}: no record has the field {key}={value!r}; the records "
                    f"have input, target. Set {key} to one of them")
