"""Config-only tasks (`data.task: jsonl`): any JSONL data set with a question field and an answer, no Python.

The `task:` section of the config (src/config.py `TaskConfig`) names the fields:

    data:
      task: jsonl
      path: data/my_set             # train.jsonl (optional: the shot pool / training data) + test.jsonl
    task:
      question_field: problem
      answer_field: result          # the final answer alone (a number, or LaTeX) ...
      # solution_field: worked      # ... or worked text ending in `#### N` (number) / a \boxed{} (latex)
      answer_type: number           # number: GSM8K's prompt and extraction | latex: MATH-500's

`answer_type: number` reads and scores like GSM8K (`Question: ...`, the `####` line, else the last number,
exact numeric comparison); an `answer_field` value becomes the answer text `#### N`. `answer_type: latex`
reads and scores like MATH-500 (`\\boxed{}` asked for and extracted, math-verify equivalence); an
`answer_field` value is the gold answer and `\\boxed{value}` the answer text.
"""

from __future__ import annotations

from src.tasks.base import Extraction, Task
from src.tasks.gsm8k import ANSWER_MARKER, GSM8K
from src.tasks.math500 import BoxedAnswerTask
from src.tasks.numeric import canonical_number

ANSWER_TYPES = ("number", "latex")


class JsonlTask(Task):
    """A task built from the `task:` config section (see module docstring); splits are `{split}.jsonl`."""

    name = "jsonl"

    def __init__(self, settings) -> None:
        if settings.answer_type not in ANSWER_TYPES:
            raise ValueError(f"task.answer_type must be one of {ANSWER_TYPES}, got {settings.answer_type!r}")
        if (settings.answer_field is None) == (settings.solution_field is None):
            raise ValueError("data.task=jsonl needs exactly one of task.answer_field (the final answer alone) "
                             "and task.solution_field (worked text ending in '#### N' or a \\boxed{} answer)")
        self.settings = settings
        self.format = GSM8K() if settings.answer_type == "number" else BoxedAnswerTask()

    def to_row(self, record: dict) -> dict:
        s = self.settings
        row = {"question": record.get(s.question_field)}
        if s.solution_field is not None:
            row["answer"] = record.get(s.solution_field)
        elif s.answer_type == "number":
            number = canonical_number(record.get(s.answer_field))
            row["answer"] = None if number is None else f"{ANSWER_MARKER} {number}"
        else:
            value = record.get(s.answer_field)
            value = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
            row["answer"] = f"\\boxed{{{value}}}" if isinstance(value, str) and value.strip() else None
            row["gold"] = value
        return row

    def row_problem(self, row: dict) -> str | None:
        return self.format.row_problem(row)

    def format_question(self, question: str) -> str:
        return self.format.format_question(question)

    def parse_gold(self, answer: str) -> str:
        return self.format.parse_gold(answer)

    def extract(self, text: str) -> Extraction:
        return self.format.extract(text)

    def answers_match(self, predicted: str | None, gold: str) -> bool:
        return self.format.answers_match(predicted, gold)
