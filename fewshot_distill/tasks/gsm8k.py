"""GSM8K (`openai/gsm8k`, `main`): the first task.

Rows are `{"question", "answer"}`; an answer is worked reasoning ending with a line `#### N`. The
question is shown as `Question: {question}`; the answer turn is the row's answer text verbatim.

Extraction from a model output (canonical numeric strings, see fewshot_distill/tasks/numbers.py):
  strict    the first number on the line of the LAST `####` marker (after the marker), else None
            (lm-evaluation-harness `strict-match` reads the `####` line only, too);
  flexible  the number after the last `####` (on its line or below) when there is one, else the
            LAST number anywhere in the text: cut-off generations still score their latest result
            (lm-evaluation-harness `flexible-extract`). This is the accuracy reported everywhere.

    >>> GSM8K().extract("... so she pays 72.\\n#### 72")
    Extraction(strict='72', flexible='72')
    >>> GSM8K().extract("3 + 4 = 7, so the answer is 7")
    Extraction(strict=None, flexible='7')
"""

from __future__ import annotations

from fewshot_distill.tasks.numbers import first_number, last_number
from fewshot_distill.tasks.base import Extraction, Task

ANSWER_MARKER = "####"
QUESTION_PREFIX = "Question: "


def _after_last_marker(text: str) -> str | None:
    position = text.rfind(ANSWER_MARKER)
    return None if position == -1 else text[position + len(ANSWER_MARKER):]


def extract_strict_answer(text: str) -> str | None:
    """The first number on the last `####` line, after the marker; None without one."""
    after_marker = _after_last_marker(text)
    if after_marker is None:
        return None
    return first_number(after_marker.split("\n", 1)[0])


def extract_answer(text: str) -> str | None:
    """The flexible answer: the first number after the last `####`, else the last number in the text.

    Decoration around the number is ignored (currency, units, `%`, markdown bold, a sentence period).
    None when the text holds no number at all. Fractions ("3/4") and scientific notation are not
    evaluated (GSM8K gold answers are integers): only their first number is taken.
    """
    after_marker = _after_last_marker(text)
    if after_marker is not None:
        number = first_number(after_marker)
        if number is not None:
            return number
    return last_number(text)


def parse_gold_answer(answer: str) -> str:
    """A row's gold answer: the number after its last `####`, no fallback (gold must be explicit).

    Raises ValueError without a `####` line or without a number after it.
    """
    after_marker = _after_last_marker(answer)
    if after_marker is None:
        raise ValueError(
            f"GSM8K gold answer has no '{ANSWER_MARKER}' line; expected the answer text to end "
            f"with '{ANSWER_MARKER} <number>' (is this the 'answer' field of a GSM8K row?): {answer[-200:]!r}")
    number = first_number(after_marker)
    if number is None:
        raise ValueError(f"GSM8K gold answer has no number after its '{ANSWER_MARKER}' marker: {answer[-200:]!r}")
    return number


class GSM8K(Task):
    name = "gsm8k"

    def row_problem(self, row: dict) -> str | None:
        problem = super().row_problem(row)
        if problem is None and ANSWER_MARKER not in row["answer"]:
            problem = f"answer has no '{ANSWER_MARKER}' line"
        return problem

    def format_question(self, question: str) -> str:
        return f"{QUESTION_PREFIX}{question}"

    def parse_gold(self, answer: str) -> str:
        return parse_gold_answer(answer)

    def extract(self, text: str) -> Extraction:
        return Extraction(strict=extract_strict_answer(text), flexible=extract_answer(text))
