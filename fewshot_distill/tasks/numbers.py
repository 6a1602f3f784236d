"""Numeric answers: find numbers in free text, canonicalise them, compare them exactly.

Shared by the numeric tasks; evaluation only counts the results (fewshot_distill/eval/answers.py). Which number
of a model output is its answer (GSM8K: after `####`, else the last one) is each task's decision;
this module only reads and compares numbers. Model outputs come
with all kinds of decoration around a number (``$1,234.50.``, ``**42**``, ``-3 dollars``, ``25%``);
the functions here turn it into one canonical numeric string so that scoring is an exact numeric
comparison (``Decimal``), never a float or raw-string comparison.

Canonical numeric string: plain decimal notation, no thousands separators, no exponent,
no trailing fractional zeros, no leading zeros, ``"0"`` rather than ``"-0"``;
e.g. ``"1234"``, ``"-3"``, ``"0.5"``, ``"3.5"``.

Example::

    >>> last_number("She pays 3 * $4 = $<<3*4=12>>12, total $1,234.50.")
    '1234.5'
    >>> answers_match("72.0", "72")
    True
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# One number as it appears in free text. ASCII digits only ([0-9], not \d) so that other
# scripts' digits never leak into an answer.
#   - sign: "-" or the Unicode minus, only when it does not follow a letter, digit or
#     closing bracket, so the "-" in "20-5" or "x-5" is read as subtraction, not a sign;
#     it may precede a currency symbol ("-$5"); "$-5" works because "$" is not part of
#     the match.
#   - integer part: either correctly grouped thousands ("1,234,567") or plain digits;
#     the lookahead stops "1,2345" from being read as "1,234" + "5".
#   - fraction: only when digits follow the point, so a sentence period ("2.") is not
#     part of the number; a bare ".5" is accepted.
NUMBER_PATTERN = re.compile(
    r"""
    (?:(?<![\w)\]}])(?P<sign>[-\u2212]))?
    (?:[$\u20ac\u00a3\u00a5\u20b9\u00a2\u20a9]\s*)?
    (?P<digits>
        (?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9]) | [0-9]+)(?:\.[0-9]+)?
      | \.[0-9]+
    )
    """,
    re.VERBOSE,
)


def _canonical(number: Decimal) -> str:
    """Format a Decimal as a canonical numeric string (see module docstring)."""
    if number == 0:
        return "0"  # also turns Decimal("-0.00") into "0"
    # normalize() drops trailing zeros; format "f" avoids the exponent normalize() can add
    # ("1200" normalizes to 1.2E+3).
    return format(number.normalize(), "f")


def _match_to_canonical(match: re.Match) -> str:
    """Turn one NUMBER_PATTERN match into its canonical numeric string."""
    value = Decimal(match.group("digits").replace(",", ""))
    if match.group("sign"):
        value = -value
    return _canonical(value)


def first_number(text: str) -> str | None:
    """The first number in `text` as a canonical numeric string, or None."""
    match = NUMBER_PATTERN.search(text)
    return None if match is None else _match_to_canonical(match)


def last_number(text: str) -> str | None:
    """The last number in `text` as a canonical numeric string, or None."""
    last_match = None
    for last_match in NUMBER_PATTERN.finditer(text):
        pass
    return None if last_match is None else _match_to_canonical(last_match)


def to_decimal(number: str, role: str) -> Decimal:
    """Parse a numeric string (canonical, or with thousands commas) into a Decimal."""
    try:
        value = Decimal(number.strip().replace(",", ""))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise ValueError(
            f"{role} answer {number!r} is not a number; pass the output of a task's "
            "extract / parse_gold (fewshot_distill/tasks/)"
        )
    return value


def answers_match(predicted: str | None, gold: str) -> bool:
    """Whether a predicted answer equals the gold answer numerically.

    Compares exact Decimals, so ``"72"`` matches ``"72.0"`` and ``"3.50"`` matches ``"3.5"``
    without float rounding. ``predicted=None`` (no number in the output) never matches.

    Raises:
        ValueError: if ``gold`` (or a non-None ``predicted``) is not a numeric string.
    """
    gold_value = to_decimal(gold, "gold")
    if predicted is None:
        return False
    return to_decimal(predicted, "predicted") == gold_value
