"""Numeric gold answers stored as numbers (SVAMP's `Answer`, GSM-Hard's `target`), and comparison within a tolerance.

Both data sets store answers as JSON floats, so a gold answer is first written as a canonical numeric string
(fewshot_distill/tasks/numbers.py): `51.0` -> "51", `3244047.0999999996` -> "3244047.0999999996" (the float's shortest
repr, exactly; no rounding here). Rows then carry the answer as a GSM8K-style `#### N` line, so prompts,
shots, extraction and training are GSM8K's.

    >>> canonical_number(51.0), canonical_number(-9867630.0)
    ('51', '-9867630')
    >>> numbers_within("14053029.667", "14053029.666666666", ABSOLUTE_TOLERANCE)
    True
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from fewshot_distill.tasks.numbers import first_number, to_decimal

# GSM-Hard's targets are floats computed by Python programs (303 of 1,319 are not integers, e.g.
# 14053029.666666666); PAL, which published the data set, counts an answer correct when it is within
# 1e-3 of the target. Decimal arithmetic, so no float rounding is added on top.
ABSOLUTE_TOLERANCE = Decimal("0.001")


def canonical_number(value) -> str | None:
    """A JSON number (or numeric string) as a canonical numeric string; None if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        # repr gives the shortest string that reads back as the same float; "f" removes any exponent.
        text = format(Decimal(repr(value) if isinstance(value, float) else str(value).strip()), "f")
    except InvalidOperation:
        return None
    return first_number(text)


def numbers_within(predicted: str | None, gold: str, tolerance: Decimal) -> bool:
    """Whether |predicted - gold| <= tolerance (exact Decimals); None never matches."""
    gold_value = to_decimal(gold, "gold")
    if predicted is None:
        return False
    return abs(to_decimal(predicted, "predicted") - gold_value) <= tolerance
