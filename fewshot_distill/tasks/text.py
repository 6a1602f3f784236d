"""Short text answers (`task.answer_type: text` of a config-only task): the answer is one line, scored by exact match.

Made for in-context-learning tasks whose input alone does not say what to do (`apple` -> `a`): the user turn
is the question as is, with no instruction and no `Question:` prefix, so the shots alone define the task;
a `template` (a format string with `{question}`) writes a different user turn.

Extraction from a model output: the first non-empty line, stripped (strict and flexible are the same:
the format has no marker to be strict about). It matches the gold answer when both are equal after
case-folding (`Paris` = `paris`, `STRASSE` = `straße`).

    >>> TextAnswerFormat().extract("\\n  Paris \\nThe capital of France.")
    Extraction(strict='Paris', flexible='Paris')
    >>> TextAnswerFormat().answers_match("RIVER", "river")
    True
"""

from __future__ import annotations

from string import Formatter

from fewshot_distill.tasks.base import Extraction, Task

QUESTION_FIELD = "question"


def template_problem(template: str) -> str | None:
    """Why `template` cannot write a user turn (it must be a format string whose only field is `{question}`),
    or None when it can."""
    try:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as error:  # a lone brace
        return f"not a format string ({error}); write a literal brace as {{{{ or }}}}"
    if fields != {QUESTION_FIELD}:
        return f"its fields must be {{{QUESTION_FIELD}}} alone, found {sorted(fields) or 'none'}"
    return None


def first_line(text: str) -> str | None:
    """The first non-empty line of `text`, stripped; None when every line is blank."""
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def text_answers_match(predicted: str | None, gold: str) -> bool:
    """Exact match after stripping and case-folding; no prediction never matches."""
    return predicted is not None and predicted.strip().casefold() == gold.strip().casefold()


class TextAnswerFormat(Task):
    """A question answered by one line of text (see module docstring); `template` writes the user turn."""

    name = "text"

    def __init__(self, template: str | None = None) -> None:
        if template is not None:
            problem = template_problem(template)
            if problem is not None:
                raise ValueError(f"task.template={template!r}: {problem}")
        self.template = template

    def row_problem(self, row: dict) -> str | None:
        problem = super().row_problem(row)
        if problem is None and len(row["answer"].strip().splitlines()) > 1:
            problem = "answer spans several lines (a text answer is one line: the first line is what is scored)"
        return problem

    def format_question(self, question: str) -> str:
        return question if self.template is None else self.template.format(question=question)

    def parse_gold(self, answer: str) -> str:
        gold = answer.strip()
        if not gold or len(gold.splitlines()) > 1:
            raise ValueError(f"a text answer is one non-empty line, got {answer[:200]!r}")
        return gold

    def extract(self, text: str) -> Extraction:
        line = first_line(text)
        return Extraction(strict=line, flexible=line)

    def answers_match(self, predicted: str | None, gold: str) -> bool:
        return text_answers_match(predicted, gold)
