"""The task interface: what one dataset defines, and nothing else does.

A task says which records of its dataset make usable rows, how a question is written in the prompt,
how the gold answer is parsed, and how an answer is extracted from a model's output. Everything
else (chat template, shots, teacher contexts, losses, evaluation loop) is shared.

Rows are `{"question": str, "answer": str}` dicts everywhere in the code; `to_row` maps a dataset
record onto that shape. `answer` is the assistant turn a model is trained on and a shot shows; a task
whose records state the final answer apart from that text (MATH-500's `answer` field) keeps it in an
optional third key, `gold`, read by `row_gold`.

Each split is one file in the `data.path` folder (`data_file`: `{split}.jsonl` by default; None when
the task has no such split, e.g. SVAMP, GSM-Hard and MATH-500 are test sets only).

Answer extraction is reported two ways, like lm-evaluation-harness's `strict-match` and
`flexible-extract` filters:
  strict    only the answer the task's own format states (for GSM8K: the `####` line), or None;
  flexible  the strict answer when there is one, else a fallback (for GSM8K: the last number).
Accuracy is the flexible number; the strict one is recorded next to it.

Adding a dataset (one new module + config):
  1. fewshot_distill/tasks/<name>.py: a `Task` subclass (row_problem, format_question, parse_gold, extract;
     to_row if its records are not `{"question", "answer"}`);
  2. fewshot_distill/tasks/__init__.py: one line in `TASKS`;
  3. a config setting `data.task: <name>` and `data.dataset`/`data.subset` (or `data.path`).
The training scripts, the teacher, evaluation and result tables need no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fewshot_distill.tasks.numbers import answers_match


@dataclass(frozen=True)
class Extraction:
    """One model output's answer, canonical strings or None: `strict` (format only), `flexible` (with fallback)."""
    strict: str | None
    flexible: str | None


class InvalidRowsError(ValueError):
    """A split's records cannot make rows (a missing field, invalid rows); the message is one line with the fix."""


class Task:
    """Base class of a dataset's task; subclasses override what differs (see module docstring)."""

    name: str = ""
    # Whether GSM8K's train rows make fitting shots when the task's data has no train split of its own
    # (SVAMP, GSM-Hard, MATH-500: math word problems; not a task of one-word answers).
    gsm8k_shots_fit: bool = True
    # File of each split under data.path; None = the default `{split}.jsonl` for every split.
    split_files: dict[str, str] | None = None

    def data_file(self, split: str) -> str | None:
        """The file name of `split` in a data.path folder, or None when the task has no such split."""
        if self.split_files is None:
            return f"{split}.jsonl"
        return self.split_files.get(split)

    def to_row(self, record: dict) -> dict:
        """A dataset record as a `{"question", "answer"}` row (fields may be missing: `row_problem` says so)."""
        return {"question": record.get("question"), "answer": record.get("answer")}

    def check_records(self, records: Sequence[dict], source: str) -> None:
        """InvalidRowsError when a split's records as a whole cannot make rows (a task built from named
        fields checks that they exist); nothing to check by default."""

    def row_problem(self, row: dict) -> str | None:
        """Why a row cannot be used, or None if it is fine."""
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not question.strip():
            return "no question"
        if not isinstance(answer, str) or not answer.strip():
            return "no answer"
        return None

    def format_question(self, question: str) -> str:
        """The user-turn text of a question (the same for shots, student and teacher)."""
        return question

    def parse_gold(self, answer: str) -> str:
        """A row's gold answer as a canonical string; ValueError if it has none."""
        raise NotImplementedError

    def row_gold(self, row: dict) -> str:
        """A row's gold answer: its `gold` key when the record states one, else parsed from its answer text."""
        gold = row.get("gold")
        return gold if isinstance(gold, str) else self.parse_gold(row["answer"])

    def extract(self, text: str) -> Extraction:
        """The strict and flexible answers in a model output."""
        raise NotImplementedError

    def answers_match(self, predicted: str | None, gold: str) -> bool:
        """Whether an extracted answer equals the gold one (exact numeric comparison by default)."""
        return answers_match(predicted, gold)


def validate_rows(rows: Sequence[dict], task: Task, policy: str = "error", source: str = "dataset",
                  max_listed: int = 5) -> tuple[list[dict], int]:
    """Keep valid rows. policy "error": raise listing the first bad rows; "skip": drop and count them."""
    problems = [(i, p) for i, p in ((i, task.row_problem(r)) for i, r in enumerate(rows)) if p]
    if problems and policy == "error":
        listed = "; ".join(f"row {i}: {p}" for i, p in problems[:max_listed])
        raise InvalidRowsError(f"{len(problems)} invalid rows in {source} ({listed}). Fix the data or set "
                         "data.invalid_rows=skip to drop them.")
    bad = {i for i, _ in problems}
    return [r for i, r in enumerate(rows) if i not in bad], len(problems)
