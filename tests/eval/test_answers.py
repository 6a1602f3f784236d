"""GSM8K answer extraction (flexible) and gold parsing (fewshot_distill/tasks/gsm8k.py), numeric matching and accuracy
(fewshot_distill/tasks/numbers.py; accuracy: fewshot_distill/eval/answers.py). Strict vs flexible extraction: tests/tasks/test_tasks.py."""

import json
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fewshot_distill.eval.answers import accuracy
from fewshot_distill.tasks.numbers import answers_match
from fewshot_distill.tasks.gsm8k import extract_answer, parse_gold_answer
from tests.conftest import SHARED

SHARED_DIR = SHARED
GSM8K_TEST = SHARED_DIR / "data" / "gsm8k" / "test.jsonl"

CANONICAL_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")


@pytest.mark.parametrize(
    "text, expected",
    [
        # plain and GSM8K-style
        ("#### 18", "18"),
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 18", "18"),
        ("####18", "18"),
        ("#### 0", "0"),
        ("#### 007", "7"),
        # thousands separators
        ("#### 1,234", "1234"),
        ("#### 1,450,000", "1450000"),
        ("#### 1,234.56", "1234.56"),
        ("#### 1234,567", "1234"),  # not a valid grouping: only the first number
        # currency and units
        ("#### $18", "18"),
        ("#### $ 18", "18"),
        ("#### $1,234.50", "1234.5"),
        ("#### €5", "5"),
        ("#### 18 dollars", "18"),
        ("#### 5kg", "5"),
        ("#### 25%", "25"),
        ("#### USD 40", "40"),
        # negatives
        ("#### -3", "-3"),
        ("#### −3", "-3"),  # Unicode minus sign
        ("#### -$3", "-3"),
        ("#### $-3.25", "-3.25"),
        ("#### -0", "0"),
        ("#### -0.0", "0"),
        # decimals
        ("#### .5", "0.5"),
        ("#### 0.5", "0.5"),
        ("#### 3.50", "3.5"),
        ("#### 3.0", "3"),
        ("#### 1200.00", "1200"),
        ("#### 0.125", "0.125"),
        # trailing punctuation and text after the number
        ("#### 2.", "2"),
        ("#### 5.", "5"),
        ("#### 3.50.", "3.5"),
        ("#### 42!", "42"),
        ("#### 42)", "42"),
        ("#### 42, which is the answer. Then 7 more.", "42"),
        ("#### 42\n\nQuestion: Tom has 3 apples", "42"),
        # markdown
        ("#### **42**", "42"),
        ("**#### 42**", "42"),
        ("#### **$1,234.**", "1234"),
        # whitespace
        ("####   \n  17  \n", "17"),
        ("####\u00a017", "17"),
        # multiple markers: the last one wins
        ("#### 5\n#### 7", "7"),
        ("First try #### 10. Correction: #### 12", "12"),
        # '#####' still contains the marker
        ("##### 9", "9"),
        # subtraction is not a sign
        ("#### 20-5", "20"),
    ],
)
def test_extract_answer_after_marker(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # cut off before '####': last number in the text
        ("She has 3 apples and buys 4 more, so 3 + 4 = 7", "7"),
        ("48 / 2 = <<48/2=24>>24", "24"),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72", "72"),
        ("She sold 48/2 = <<48/2=24>>", "24"),  # cut inside the annotation
        ("The total is 20-5", "5"),  # '-' after a digit is subtraction
        ("The temperature fell to -5.", "-5"),
        ("So the price is $1,234.50.", "1234.5"),
        ("The discount is 25%.", "25"),
        ("That makes 2.", "2"),
        # '####' with nothing numeric after it falls back to the last number before it
        ("3 + 4 = 7\n####", "7"),
        ("3 + 4 = 7\n#### seven", "7"),
    ],
)
def test_extract_answer_fallback_to_last_number(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "no numbers here", "#### ", "####", "The answer is seven.", "-", ".", "$", "#### $."],
)
def test_extract_answer_none_without_number(text):
    assert extract_answer(text) is None


def test_extract_answer_ignores_non_ascii_digits():
    # Arabic-Indic digits are not part of the expected output format
    assert extract_answer("#### ٣") is None


def test_parse_gold_answer():
    answer = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes $18.\n#### 18"
    assert parse_gold_answer(answer) == "18"
    assert parse_gold_answer("x\n#### 1,450,000") == "1450000"
    assert parse_gold_answer("x\n#### -7") == "-7"


def test_parse_gold_answer_without_marker_raises():
    with pytest.raises(ValueError, match="no '####' line"):
        parse_gold_answer("She makes 9 * 2 = $18 every day.")


def test_parse_gold_answer_without_number_raises():
    with pytest.raises(ValueError, match="no number after"):
        parse_gold_answer("She makes 18 dollars.\n#### eighteen")


@pytest.mark.parametrize(
    "predicted, gold, expected",
    [
        ("72", "72", True),
        ("72", "72.0", True),
        ("72.0", "72", True),
        ("3.50", "3.5", True),
        ("0.5", ".5", True),
        ("1234", "1,234", True),
        ("-3", "3", False),
        ("72", "73", False),
        ("0.1", "0.10000000000000001", False),  # exact, not float, comparison
        (None, "72", False),
        (None, "0", False),
    ],
)
def test_answers_match(predicted, gold, expected):
    assert answers_match(predicted, gold) is expected


@pytest.mark.parametrize("gold", ["", "abc", "nan", "inf"])
def test_answers_match_rejects_non_numeric_gold(gold):
    with pytest.raises(ValueError, match="not a number"):
        answers_match("1", gold)


def test_accuracy():
    assert accuracy([True, False, True, True]) == {"accuracy": 0.75, "correct": 3, "total": 4}
    assert accuracy(iter([False])) == {"accuracy": 0.0, "correct": 0, "total": 1}


def test_accuracy_empty_raises():
    with pytest.raises(ValueError, match="no examples"):
        accuracy([])


def test_accuracy_rejects_non_bool():
    with pytest.raises(ValueError, match=r"correct_flags\[1\]"):
        accuracy([True, "yes"])


@pytest.fixture
def gsm8k_test_rows():
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent")
    with GSM8K_TEST.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_every_gsm8k_test_gold_answer_parses(gsm8k_test_rows):
    assert len(gsm8k_test_rows) == 1319
    for row in gsm8k_test_rows:
        raw = row["answer"].rsplit("####", 1)[1].strip()
        gold = parse_gold_answer(row["answer"])
        assert gold == str(int(raw.replace(",", ""))), row["answer"]
        assert answers_match(gold, gold)
        # a model output identical to the gold answer text is scored correct
        assert answers_match(extract_answer(row["answer"]), gold)


# ---- property tests -------------------------------------------------------------------

# Random text without any digit (Nd) and without surrogates.
digit_free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=30
)


@st.composite
def formatted_numbers(draw):
    """A (value, formatted string) pair: integers or decimals with GSM8K-ish decoration."""
    unscaled = draw(st.integers(min_value=-10**12, max_value=10**12))
    places = draw(st.integers(min_value=0, max_value=4))
    value = Decimal(unscaled).scaleb(-places)
    magnitude = format(abs(value), ",f" if draw(st.booleans()) else "f")
    if magnitude.startswith("0.") and draw(st.booleans()):
        magnitude = magnitude[1:]  # ".5" style
    currency = draw(st.sampled_from(["", "$", "$ ", "€", "£"]))
    if value < 0:
        body = draw(st.sampled_from([f"-{currency}{magnitude}", f"{currency}-{magnitude}"]))
    else:
        body = f"{currency}{magnitude}"
    suffix = draw(st.sampled_from(["", ".", "!", "%", " dollars", " dollars.", ",", ")"]))
    formatted = body + suffix
    if draw(st.booleans()):
        formatted = f"**{formatted}**"
    spacing = draw(st.sampled_from([" ", "", "  ", "\n", "\t", "\u00a0", " \n "]))
    return value, spacing + formatted + draw(st.sampled_from(["", " ", "\n"]))


@settings(max_examples=300, deadline=None)
@given(formatted_numbers(), digit_free_text, digit_free_text)
def test_extract_answer_recovers_formatted_number(value_and_text, before, after):
    value, formatted = value_and_text
    extracted = extract_answer(f"{before} ####{formatted}{after}")
    assert extracted is not None
    assert CANONICAL_NUMBER.fullmatch(extracted), extracted
    assert Decimal(extracted) == value


@settings(max_examples=200, deadline=None)
@given(formatted_numbers())
def test_extract_answer_fallback_recovers_last_number(value_and_text):
    value, formatted = value_and_text
    extracted = extract_answer(f"The total is 12 + 3, so the answer is {formatted}")
    assert Decimal(extracted) == value


numeric_strings = st.one_of(
    st.integers(min_value=-10**15, max_value=10**15).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f")),
)


@given(numeric_strings)
def test_answers_match_reflexive(number):
    assert answers_match(number, number)


@given(numeric_strings, numeric_strings)
def test_answers_match_symmetric(first, second):
    assert answers_match(first, second) == answers_match(second, first)


@given(st.integers(min_value=-10**9, max_value=10**9), st.integers(min_value=0, max_value=3))
def test_trailing_zeros_do_not_matter(integer, zeros):
    padded = f"{integer}." + "0" * zeros if zeros else str(integer)
    assert answers_match(padded, str(integer))
    assert extract_answer(f"#### {padded}") == str(integer)
