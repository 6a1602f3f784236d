"""Accuracy from per-example correctness flags (which answer is correct is the task's decision: fewshot_distill/tasks/)."""

from __future__ import annotations

from typing import Iterable


def accuracy(correct_flags: Iterable[bool]) -> dict:
    """Summarise per-example correctness as ``{"accuracy", "correct", "total"}``.

    ``accuracy`` is the fraction ``correct / total`` in [0, 1] (not a percentage).

    Raises:
        ValueError: if there are no flags (an empty evaluation is a bug upstream, e.g. an
            empty subset, and must not be reported as 0% accuracy), or a flag is not a bool.
    """
    flags = list(correct_flags)
    for index, flag in enumerate(flags):
        if flag not in (True, False):  # also admits numpy.bool_ and 0/1
            raise ValueError(f"correct_flags[{index}] is {flag!r}; expected True or False")
    if not flags:
        raise ValueError(
            "accuracy() got no examples; check that the evaluation subset is not empty"
        )
    correct = sum(1 for flag in flags if flag)
    return {"accuracy": correct / len(flags), "correct": correct, "total": len(flags)}
