"""Config-only tasks (`data.task: jsonl`): any JSONL data set with a question field and an answer, no Python.

The `task:` section of the config (fewshot_distill/config.py `TaskConfig`) names the fields:

    data:
      task: jsonl
      path: data/my_set             # train.jsonl (optional: the shot pool / training data) + test.jsonl
    task:
      question_field: problem
      answer_field: result          # the final answer alone (a number, or LaTeX) ...
      # solution_field: worked      # ... or worked text ending in `#### N` (number) / a \boxed{} (latex)
      answer_type: number           # number: GSM8K's prompt and extraction | latex: MATH-500's | text
      # template: "Word: {question}"  # text only: the user turn (default: the question as is)

`answer_type: number` reads and scores like GSM8K (`Question: ...`, the `####` line, else the last number,
exact numeric comparison); an `answer_field` value becomes the answer text `#### N`. `answer_type: latex`
reads and scores like MATH-500 (`\\boxed{}` asked for and extracted, math-verify equivalence); an
`answer_field` value is the gold answer and `\\boxed{value}` the answer text. `answer_type: text` (fewshot_distill/tasks/text.py)
shows the question as is (or through `task.template`) and scores the first non-empty output line by exact
match, case-folded; its `answer_field` value is both the answer text and the gold answer.

Each split's records are checked for the configured fields first: a field no record has stops the load
with the fields the records do have (`check_records`).
"""

from __future__ import annotations

from typing import Sequence

from fewshot_distill.tasks.base import Extraction, InvalidRowsError, Task
from fewshot_distill.tasks.gsm8k import ANSWER_MARKER, GSM8K
from fewshot_distill.tasks.math500 import BoxedAnswerTask
from fewshot_distill.tasks.numeric import canonical_number
from fewshot_distill.tasks.text import TextAnswerFormat

ANSWER_TYPES = ("number", "latex", "text")


def _as_text(value):
    """A record value as text: numbers become their JSON spelling (`7`), anything else is kept (and judged
    by `row_problem`)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


class JsonlTask(Task):
    """A task built from the `task:` config section (see module docstring); splits are `{split}.jsonl`."""

    name = "jsonl"

    def __init__(self, settings) -> None:
        if settings.answer_type not in ANSWER_TYPES:
            raise ValueError(f"task.answer_type must be one of {ANSWER_TYPES}, got {settings.answer_type!r}")
        if (settings.answer_field is None) == (settings.solution_field is None):
            raise ValueError("data.task=jsonl needs exactly one of task.answer_field (the final answer alone) "
                             "and task.solution_field (worked text ending in '#### N' or a \\boxed{} answer)")
        template = getattr(settings, "template", None)
        if settings.answer_type == "text" and settings.solution_field is not None:
            raise ValueError("task.answer_type=text reads task.answer_field (the answer line itself); "
                             "task.solution_field is for answer_type number or latex")
        if template is not None and settings.answer_type != "text":
            raise ValueError(f"task.template is for task.answer_type=text; answer_type={settings.answer_type} "
                             "writes its own prompt (set task.template=null)")
        self.settings = settings
        # GSM8K's train rows are no shots for a text task (test-only data without train.jsonl): fewshot_distill/eval/shot_source.py
        self.gsm8k_shots_fit = settings.answer_type != "text"
        formats = {"number": GSM8K, "latex": BoxedAnswerTask, "text": lambda: TextAnswerFormat(template)}
        self.format = formats[settings.answer_type]()

    @property
    def record_fields(self) -> dict[str, str]:
        """The configured record fields: {config key: field name}."""
        s = self.settings
        keys = ("question_field", "answer_field", "solution_field")
        return {f"task.{key}": getattr(s, key) for key in keys if getattr(s, key) is not None}

    def check_records(self, records: Sequence[dict], source: str) -> None:
        """InvalidRowsError naming a configured field that no record has, with the fields the records have."""
        if not records:
            return
        present = set().union(*(record.keys() for record in records))
        for key, name in self.record_fields.items():
            if name not in present:
                raise InvalidRowsError(
                    f"{source}: no record has the field {key}={name!r}; the records have "
                    f"{', '.join(sorted(present))}. Set {key} to one of them")

    def to_row(self, record: dict) -> dict:
        s = self.settings
        row = {"question": record.get(s.question_field)}
        if s.answer_type == "text":
            row["question"] = _as_text(row["question"])
            row["answer"] = _as_text(record.get(s.answer_field))
            if isinstance(row["answer"], str):
                row["gold"] = row["answer"].strip()
        elif s.solution_field is not None:
            row["answer"] = record.get(s.solution_field)
        elif s.answer_type == "number":
            number = canonical_number(record.get(s.answer_field))
            row["answer"] = None if number is None else f"{ANSWER_MARKER} {number}"
        else:
            value = _as_text(record.get(s.answer_field))
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
