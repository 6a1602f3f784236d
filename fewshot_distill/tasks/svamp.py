"""SVAMP (arkilpatel/SVAMP, `SVAMP.json`): 1,000 one- or two-step arithmetic word problems, a test set only.

A record is `{"ID", "Body", "Question", "Equation", "Answer" (float), "Type"}`. The question is
`Body + " " + Question` (as the data set's authors evaluate it); the row's answer text is `#### N` with N the
canonical `Answer` (fewshot_distill/tasks/numeric.py), so SVAMP reads and scores exactly like GSM8K: `Question: ...`,
strict = the `####` line, flexible = else the last number, exact numeric comparison (every SVAMP answer is
an integer). There is no train split: the few-shot base row takes its shots from GSM8K train
(fewshot_distill/eval/shot_source.py). Training on it is possible with `data.train_split=test`.
"""

from __future__ import annotations

from fewshot_distill.tasks.gsm8k import ANSWER_MARKER, GSM8K
from fewshot_distill.tasks.numeric import canonical_number


class SVAMP(GSM8K):
    name = "svamp"
    split_files = {"test": "SVAMP.json"}

    def to_row(self, record: dict) -> dict:
        body, question = record.get("Body"), record.get("Question")
        number = canonical_number(record.get("Answer"))
        text = (f"{body.strip()} {question.strip()}"
                if isinstance(body, str) and isinstance(question, str) and question.strip() else None)
        return {"question": text, "answer": None if number is None else f"{ANSWER_MARKER} {number}"}
