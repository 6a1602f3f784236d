"""GSM-Hard v2 (reasoning-machines/pal, `gsmhardv2.jsonl`): the 1,319 GSM8K test questions with larger numbers.

A record is `{"input", "code", "target" (float)}`. The question is `input`; the row's answer text is
`#### N` with N the canonical `target` (fewshot_distill/tasks/numeric.py; 303 targets are not integers, e.g.
14053029.666666666). Prompts and extraction are GSM8K's; an answer is correct when it is within
`ABSOLUTE_TOLERANCE` (1e-3, PAL's rule) of the target, so "14053029.667" counts and "14053029.67" does not.
A test set only: the few-shot base row takes its shots from GSM8K train.
"""

from __future__ import annotations

from fewshot_distill.tasks.gsm8k import ANSWER_MARKER, GSM8K
from fewshot_distill.tasks.numeric import ABSOLUTE_TOLERANCE, canonical_number, numbers_within


class GSMHard(GSM8K):
    name = "gsm_hard"
    split_files = {"test": "gsmhardv2.jsonl"}
    tolerance = ABSOLUTE_TOLERANCE

    def to_row(self, record: dict) -> dict:
        number = canonical_number(record.get("target"))
        return {"question": record.get("input"),
                "answer": None if number is None else f"{ANSWER_MARKER} {number}"}

    def answers_match(self, predicted: str | None, gold: str) -> bool:
        return numbers_within(predicted, gold, self.tolerance)
