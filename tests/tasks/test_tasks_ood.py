"""SVAMP, GSM-Hard and MATH-500 on their real files in ../shared (every row parsed, failures listed), gold
answers, strict/flexible extraction on hand-written generations, math-verify equivalence on tricky LaTeX,
and config-only JSONL tasks."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fewshot_distill.config import ConfigError, load_config
from fewshot_distill.tasks import Extraction, get_task, task_of, validate_rows
from tests.conftest import REPO_ROOT, SHARED

DATA = SHARED / "data"
BASE_CONFIG = REPO_ROOT / "configs" / "base.yaml"


def read_records(task_name: str) -> list[dict]:
    task = get_task(task_name)
    path = DATA / task_name / task.data_file("test")
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line]


def failing_rows(task_name: str) -> list[tuple[int, str]]:
    """(record index, why) for every record of the shared file that does not make a usable row with a gold."""
    task = get_task(task_name)
    failures = []
    for index, record in enumerate(read_records(task_name)):
        row = task.to_row(record)
        problem = task.row_problem(row)
        if problem is None:
            try:
                task.row_gold(row)
            except ValueError as error:
                problem = str(error)
        if problem:
            failures.append((index, problem))
    return failures


@pytest.mark.parametrize("task_name, n_rows", [("svamp", 1000), ("gsm_hard", 1319), ("math500", 500)])
def test_every_row_of_the_shared_file_parses(task_name, n_rows):
    records = read_records(task_name)
    assert len(records) == n_rows
    failures = failing_rows(task_name)
    assert failures == [], f"{len(failures)} rows of {task_name} fail: {failures[:20]}"


@pytest.mark.parametrize("task_name", ["svamp", "gsm_hard", "math500"])
def test_loader_reads_the_original_file_from_data_path(task_name):
    from fewshot_distill.data.examples import load_task_rows
    from fewshot_distill.utils.resources import ResourceError

    read_records(task_name)  # skips when absent
    cfg = load_config(BASE_CONFIG, [f"data.task={task_name}", f"data.path={DATA / task_name}"])
    rows = load_task_rows(cfg.data, "test")
    assert len(rows) == len(read_records(task_name))
    with pytest.raises(ResourceError, match=f"data.task={task_name} has no 'train' split"):
        load_task_rows(cfg.data, "train")


def test_svamp_rows_and_gold():
    task = get_task("svamp")
    records = read_records("svamp")
    row = task.to_row(records[0])
    assert row == {"question": "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each "
                               "pack How much do you have to pay to buy each pack?", "answer": "#### 51"}
    assert task.row_gold(row) == "51"
    golds = [task.row_gold(task.to_row(r)) for r in records]
    assert all(float(g) == r["Answer"] for g, r in zip(golds, records))
    assert task.row_problem(task.to_row({"Body": "b", "Question": "q?", "Answer": None})) == "no answer"
    assert task.format_question("How many?") == "Question: How many?"


def test_gsm_hard_gold_keeps_float_targets_exactly():
    task = get_task("gsm_hard")
    records = read_records("gsm_hard")
    golds = [task.row_gold(task.to_row(r)) for r in records]
    assert golds[0] == "-9867630"
    assert sum("." in g for g in golds) == 303  # the shared README's count of non-integer targets
    assert all(float(g) == r["target"] for g, r in zip(golds, records))
    assert "14053029.666666666" in golds and "3244047.0999999996" in golds


@pytest.mark.parametrize("predicted, gold, match", [
    ("14053029.667", "14053029.666666666", True),     # within 1e-3
    ("14053029.67", "14053029.666666666", False),     # 3.3e-3 away
    ("3244047.1", "3244047.0999999996", True),        # the target's float error is far below the tolerance
    ("-9867630", "-9867630", True),
    ("-9867631", "-9867630", False),
    (None, "5", False),
])
def test_gsm_hard_compares_within_the_stated_tolerance(predicted, gold, match):
    assert get_task("gsm_hard").answers_match(predicted, gold) is match


@pytest.mark.parametrize("task_name", ["svamp", "gsm_hard"])
@pytest.mark.parametrize("text, strict, flexible", [
    ("He pays 76 - 25 = 51 dollars.\n#### 51", "51", "51"),
    ("76 - 25 = 51, so the answer is $51.", None, "51"),
    ("#### -1,234.5 dollars", "-1234.5", "-1234.5"),
    ("I cannot tell.", None, None),
])
def test_numeric_tasks_extract_like_gsm8k(task_name, text, strict, flexible):
    assert get_task(task_name).extract(text) == Extraction(strict=strict, flexible=flexible)


def test_math500_rows_and_gold():
    task = get_task("math500")
    records = read_records("math500")
    row = task.to_row(records[0])
    assert row["question"] == records[0]["problem"] and row["answer"] == records[0]["solution"]
    assert task.row_gold(row) == "\\left( 3, \\frac{\\pi}{2} \\right)"
    # The solution's last \boxed{} states the record's answer (math-verify) on every row.
    for record in records:
        assert task.answers_match(task.parse_gold(record["solution"]), record["answer"]), record["unique_id"]
    assert task.format_question("Find x.").endswith("put your final answer within \\boxed{}.")
    assert task.row_problem({"question": "q", "answer": "no box"}) == "answer has no \\boxed{} final answer"


@pytest.mark.parametrize("text, strict, flexible", [
    ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "\\frac{1}{2}"),
    ("\\boxed{3} first, then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
     "\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),    # the last box
    ("the answer is \\boxed 5.", "5", "5"),                                            # TeX's one-token argument
    ("\\fbox{[1, 2)}", "[1, 2)", "[1, 2)"),
    ("x = \\boxed{\\frac{1}{2", None, "2"),                 # a box cut off: no strict answer
    ("2 + 2 = 4\n#### 4 apples.", None, "4 apples"),        # a GSM8K-trained checkpoint's answer line
    ("2 + 2 = 4, then 5", None, "5"),
    ("no answer", None, None),
])
def test_math500_strict_and_flexible_extraction(text, strict, flexible):
    assert get_task("math500").extract(text) == Extraction(strict=strict, flexible=flexible)


@pytest.mark.parametrize("predicted, gold, match", [
    ("0.5", "\\frac12", True),
    ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
    ("\\tfrac34", "0.75", True),
    ("[1, 2)", "[1,2)", True),
    ("(1,2]", "[1,2]", False),                            # open vs closed end
    ("(-\\infty, 3)", "(-\\infty,3)", True),
    ("10", "10\\text{ cm}", True),                        # units in \text{} are dropped
    ("\\text{(C)}", "\\text{(C)}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\frac{1}{3}", "0.5", False),
    ("", "1", False),
    (None, "1", False),
])
def test_math_verify_equivalence_on_tricky_latex(predicted, gold, match):
    assert get_task("math500").answers_match(predicted, gold) is match


def jsonl_settings(**fields):
    base = {"question_field": "question", "answer_field": None, "solution_field": None, "answer_type": "number"}
    return SimpleNamespace(**{**base, **fields})


def test_jsonl_task_number_answer_field():
    task = get_task("jsonl", jsonl_settings(question_field="problem", answer_field="result"))
    row = task.to_row({"problem": "1 + 1?", "result": 2.0})
    assert row == {"question": "1 + 1?", "answer": "#### 2"} and task.row_gold(row) == "2"
    assert task.format_question("1 + 1?") == "Question: 1 + 1?"
    assert task.extract("so 2\n#### 2") == Extraction("2", "2")
    assert task.row_problem(task.to_row({"problem": "q", "result": "n/a"})) == "no answer"


def test_jsonl_task_solution_field_and_latex():
    task = get_task("jsonl", jsonl_settings(solution_field="worked"))
    assert task.row_gold(task.to_row({"question": "q", "worked": "3 + 4 = 7\n#### 7"})) == "7"
    assert task.row_problem(task.to_row({"question": "q", "worked": "7"})) == "answer has no '####' line"
    latex = get_task("jsonl", jsonl_settings(answer_field="ans", answer_type="latex"))
    row = latex.to_row({"question": "q", "ans": "\\frac12"})
    assert row["answer"] == "\\boxed{\\frac12}" and latex.row_gold(row) == "\\frac12"
    assert latex.answers_match(latex.extract("so \\boxed{0.5}").flexible, latex.row_gold(row))


def test_jsonl_config_errors_are_one_line():
    cfg = load_config(BASE_CONFIG, ["data.task=jsonl", "task.answer_field=result"])
    assert task_of(cfg.data).settings.answer_field == "result"
    with pytest.raises(ConfigError, match="exactly one of task.answer_field"):
        load_config(BASE_CONFIG, ["data.task=jsonl"])
    with pytest.raises(ConfigError, match="exactly one of task.answer_field"):
        load_config(BASE_CONFIG, ["data.task=jsonl", "task.answer_field=a", "task.solution_field=b"])
    with pytest.raises(ConfigError, match="Did you mean 'task.answer_field'"):
        load_config(BASE_CONFIG, ["task.answer_feld=a"])
    with pytest.raises(ConfigError, match="task.answer_type must be one of"):
        load_config(BASE_CONFIG, ["task.answer_type=words"])
    with pytest.raises(ValueError, match="task: section"):
        get_task("jsonl")


def test_validate_rows_lists_failing_rows_of_a_task():
    task = get_task("svamp")
    rows = [task.to_row(r) for r in ({"Body": "b", "Question": "q?", "Answer": 1.0},
                                     {"Body": "b", "Question": "", "Answer": 1.0})]
    with pytest.raises(ValueError, match="row 1: no question"):
        validate_rows(rows, task)
