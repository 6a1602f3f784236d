"""LaTeX final answers: `\\boxed{...}` extraction and equivalence by `math-verify`.

`last_boxed` reads the argument of the last `\\boxed{...}` (or `\\fbox{...}`) with its braces balanced, so
`\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`; an unclosed box (a generation cut off) gives None.
Equivalence is math-verify's (Hugging Face's maintained answer checker: LaTeX parsed to sympy, then
numeric and symbolic comparison, intervals, sets, units in `\\text{}` dropped), never a hand-written
normaliser here:

    >>> last_boxed("so the answer is $\\\\boxed{\\\\dfrac{1}{2}}$.")
    '\\\\dfrac{1}{2}'
    >>> latex_equivalent("0.5", "\\\\frac12")
    True
"""

from __future__ import annotations

import re

BOX_COMMANDS = ("\\boxed", "\\fbox")


def _box_argument(text: str, start: int) -> str | None:
    """The brace-balanced argument that starts at text[start] ('{'), or None if it never closes."""
    depth = 0
    for position in range(start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:position]
    return None


def last_boxed(text: str) -> str | None:
    """The stripped argument of the last `\\boxed{}`/`\\fbox{}` in `text`; None without a closed one."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\b\s*", text)]
    for start in reversed(starts):
        if start < len(text) and text[start] == "{":
            argument = _box_argument(text, start)
            if argument is not None and argument.strip():
                return argument.strip()
        elif start < len(text):
            # "\boxed 5": the argument is the next token, as TeX reads it.
            token = re.match(r"[^\s$.,;]+", text[start:])
            if token:
                return token.group(0)
    return None


def _parsed(answer: str):
    from math_verify import parse  # imported here: only LaTeX tasks need the package

    return parse(f"${answer}$")


def latex_equivalent(predicted: str | None, gold: str) -> bool:
    """Whether a predicted LaTeX answer equals the gold one by math-verify; None (no answer) never does.

    math-verify gets `gold` first (it is asymmetric: the gold answer decides, e.g., whether an interval
    or a set is meant). An answer it cannot parse does not match; its parse/verify time limits apply.
    """
    from math_verify import verify

    if predicted is None or not predicted.strip():
        return False
    gold_parsed = _parsed(gold)
    if not gold_parsed:
        raise ValueError(f"gold answer {gold!r} is not LaTeX math-verify can parse; check the data's answer field")
    try:
        return bool(verify(gold_parsed, _parsed(predicted)))
    except Exception:  # math-verify raises on some inputs (timeouts off the main thread): a non-answer
        return False
