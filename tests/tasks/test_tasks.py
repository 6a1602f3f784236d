"""The task interface (fewshot_distill/tasks/) with GSM8K: strict vs flexible extraction, gold, rows, registry."""

from __future__ import annotations

import pytest

from fewshot_distill.config import ConfigError, DataConfig
from fewshot_distill.tasks import TASKS, Extraction, get_task
from fewshot_distill.tasks.gsm8k import GSM8K

TASK = GSM8K()


@pytest.mark.parametrize("text, strict, flexible", [
    ("#### 72", "72", "72"),
    ("She pays 3 * 24 = <<3*24=72>>72.\n#### 72", "72", "72"),
    ("#### $1,234.50.", "1234.5", "1234.5"),
    ("**#### 42**", "42", "42"),
    ("#### 5\n#### 7", "7", "7"),                    # the last marker counts, for both
    ("... so 72", None, "72"),                      # no marker: only flexible falls back to the last number
    ("3 + 4 = 7, so the answer is 7", None, "7"),
    ("3 + 4 = 7\n#### seven", None, "7"),           # nothing numeric on the '####' line
    ("3 + 4 = 7\n####\n8", None, "8"),              # strict reads the '####' line only; flexible below it
    ("#### 12 apples, not 13", "12", "12"),
    ("no numbers here", None, None),
    ("", None, None),
])
def test_strict_and_flexible_extraction(text, strict, flexible):
    assert TASK.extract(text) == Extraction(strict=strict, flexible=flexible)


def test_strict_answer_is_flexible_when_present():
    for text in ["#### 1", "x\n#### -3", "a 5 b\n#### 0.5 then 9", "#### 1,000\nlater 7"]:
        extraction = TASK.extract(text)
        assert extraction.strict is not None and extraction.strict == extraction.flexible


def test_gold_rows_and_question_text():
    assert TASK.parse_gold("x\n#### 1,450,000") == "1450000"
    with pytest.raises(ValueError, match="no '####' line"):
        TASK.parse_gold("18")
    assert TASK.row_problem({"question": "q", "answer": "a\n#### 1"}) is None
    assert TASK.row_problem({"question": "q", "answer": "a"}) == "answer has no '####' line"
    assert TASK.row_problem({"question": " ", "answer": "#### 1"}) == "no question"
    assert TASK.format_question("How many?") == "Question: How many?"
    assert TASK.answers_match("72.0", "72") and not TASK.answers_match(None, "72")
    assert TASK.to_row({"question": "q", "answer": "a", "extra": 1}) == {"question": "q", "answer": "a"}


def test_registry_and_config():
    assert get_task() is TASKS["gsm8k"] and get_task("gsm8k").name == "gsm8k"
    assert DataConfig().task == "gsm8k"
    with pytest.raises(ConfigError, match="data.task must be one of"):
        DataConfig(task="math")
    with pytest.raises(ValueError, match="data.task"):
        get_task("math")
