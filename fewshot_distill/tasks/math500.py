"""MATH-500 (the MATH test subset of "Let's Verify Step by Step", `test.jsonl`): LaTeX answers, a test set only.

A record is `{"problem", "solution", "answer" (LaTeX), "subject", "level", "unique_id"}`. The row's question is
`problem`, its answer text (what training and shots would show) is `solution`, whose final answer is its last
`\\boxed{}`; the gold answer is the record's `answer` field (kept as the row's `gold`).

The prompt asks for the answer in `\\boxed{}` (`QUESTION_SUFFIX`, the instruction Qwen's math models are
evaluated with). Extraction from a model output:
  strict    the argument of the last `\\boxed{}` (fewshot_distill/tasks/latex.py), else None;
  flexible  the strict answer when there is one, else the rest of the last `####` line (GSM8K-trained
            checkpoints answer that way), else the last number in the text.
Equivalence is math-verify's (`latex_equivalent`): `\\frac12` = `0.5`, `\\dfrac`, intervals, `\\text{}` units.
"""

from __future__ import annotations

from fewshot_distill.tasks.numbers import last_number
from fewshot_distill.tasks.base import Extraction, Task
from fewshot_distill.tasks.gsm8k import ANSWER_MARKER
from fewshot_distill.tasks.latex import last_boxed, latex_equivalent

QUESTION_SUFFIX = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."


def _marker_line(text: str) -> str | None:
    position = text.rfind(ANSWER_MARKER)
    if position == -1:
        return None
    line = text[position + len(ANSWER_MARKER):].split("\n", 1)[0].strip().rstrip(".").strip()
    return line or None


def extract_boxed_answer(text: str) -> Extraction:
    """Strict: the last `\\boxed{}`; flexible: that, else the last `####` line, else the last number."""
    strict = last_boxed(text)
    flexible = strict or _marker_line(text) or last_number(text)
    return Extraction(strict=strict, flexible=flexible)


class BoxedAnswerTask(Task):
    """Questions answered in LaTeX inside `\\boxed{}`; gold from the answer text's last box (or a row's `gold`)."""

    def row_problem(self, row: dict) -> str | None:
        problem = super().row_problem(row)
        if problem is None and not isinstance(row.get("gold"), str) and last_boxed(row["answer"]) is None:
            problem = "answer has no \\boxed{} final answer"
        if problem is None and isinstance(row.get("gold"), str) and not row["gold"].strip():
            problem = "empty gold answer"
        return problem

    def format_question(self, question: str) -> str:
        return f"{question}{QUESTION_SUFFIX}"

    def parse_gold(self, answer: str) -> str:
        gold = last_boxed(answer)
        if gold is None:
            raise ValueError(f"gold answer has no \\boxed{{}} final answer: {answer[-200:]!r}")
        return gold

    def extract(self, text: str) -> Extraction:
        return extract_boxed_answer(text)

    def answers_match(self, predicted: str | None, gold: str) -> bool:
        return latex_equivalent(predicted, gold)


class MATH500(BoxedAnswerTask):
    name = "math500"
    split_files = {"test": "test.jsonl"}

    def to_row(self, record: dict) -> dict:
        return {"question": record.get("problem"), "answer": record.get("solution"), "gold": record.get("answer")}
