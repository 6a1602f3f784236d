"""What the evaluation entry points (scripts/eval_checkpoints.py, scripts/eval_diagnostics.py) do with data they
cannot use, in this process: one `error:` line naming the file, the line or field, and the fix, exit status 2,
before any model is loaded; and a 0-shot evaluation of a test set without a train split needs no shot source."""

from __future__ import annotations

import json

import pytest

from fewshot_distill.eval.diagnostics_run import main as diagnostics_main
from fewshot_distill.eval.evaluate import main as evaluate_main
from tests.conftest import REPO_ROOT, SMOKE_DATA
from tests.helpers import data_copy_with_a_broken_line

BASE_CONFIG = REPO_ROOT / "configs" / "base.yaml"


def run_entry(main, tmp_path, model_dir, conditions, *overrides) -> list[str]:
    generation = ["--backend", "hf", "--max_new_tokens", "2"] if main is evaluate_main else []
    return main(["--config", str(BASE_CONFIG), "--conditions", *conditions, "--output", str(tmp_path / "out.json"),
                 "--n_samples", "2", *generation, f"model.name={model_dir}", *overrides])


def error_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return [line for line in captured.err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("main", [evaluate_main, diagnostics_main], ids=["eval_checkpoints", "eval_diagnostics"])
@pytest.mark.parametrize("broken", ["test", "train"])
def test_a_truncated_jsonl_line_is_one_error_line_with_file_and_line(main, broken, tiny_model_dir, tmp_path, capsys):
    """train.jsonl is read for the shots (icl_8shot; the diagnostics' teacher), test.jsonl for the rows."""
    path, line = data_copy_with_a_broken_line(SMOKE_DATA, tmp_path / "data", broken)
    status = run_entry(main, tmp_path, tiny_model_dir, ["base_0shot", "icl_8shot"], f"data.path={path.parent}")
    assert status == 2
    errors = error_lines(capsys)
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}:{line}: not a JSON object"), errors
    assert "fix or delete that line" in errors[0]
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("main", [evaluate_main, diagnostics_main], ids=["eval_checkpoints", "eval_diagnostics"])
def test_a_field_no_record_has_is_one_error_line_naming_the_fields(main, tiny_model_dir, tmp_path, capsys):
    status = run_entry(main, tmp_path, tiny_model_dir, ["base_0shot"], f"data.path={SMOKE_DATA}", "data.task=jsonl",
                       "task.question_field=input", "task.answer_field=answer", "task.answer_type=text")
    assert status == 2
    assert error_lines(capsys) == [
        f"error: {SMOKE_DATA / 'test.jsonl'}: no record has the field task.question_field='input'; the records "
        "have answer, question. Set task.question_field to one of them"]


@pytest.fixture
def test_only_folder(tmp_path):
    """A test.jsonl with no train.jsonl beside it: a text answer (target) and a number (length) per word."""
    folder = tmp_path / "test_only"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps({"input": w, "target": w[0], "length": len(w)}) + "\n"
                                               for w in ("apple", "river", "cat")))
    return folder


def test_zero_shot_rows_of_a_test_only_set_need_no_shot_source(tiny_model_dir, tmp_path, test_only_folder,
                                                                monkeypatch):
    """Neither the hub (GSM8K's train split, the fallback shot pool) nor --shot_path is touched."""
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked for a data set")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    for task in (["data.task=jsonl", "task.question_field=input", "task.answer_field=target",
                  "task.answer_type=text"],
                 ["data.task=jsonl", "task.question_field=input", "task.answer_field=length"]):  # a number task
        output = tmp_path / f"{len(task)}.json"
        status = evaluate_main(["--config", str(BASE_CONFIG), "--conditions", "base_0shot", "--output", str(output),
                                "--n_samples", "1", "--backend", "hf", "--max_new_tokens", "1",
                                f"model.name={tiny_model_dir}", f"data.path={test_only_folder}", *task])
        assert status == 0
        results = json.loads(output.read_text())
        assert results["prompting"]["shots_from"] is None
        assert results["conditions"]["base_0shot"]["base"]["total"] == 1


def test_shots_of_a_text_task_without_train_split_are_one_error_line(tiny_model_dir, tmp_path, test_only_folder,
                                                                      capsys):
    """GSM8K's word problems would be no shots for a one-word task: the few-shot row says what is missing."""
    status = run_entry(evaluate_main, tmp_path, tiny_model_dir, ["icl_8shot"], f"data.path={test_only_folder}",
                       "data.task=jsonl", "task.question_field=input", "task.answer_field=target",
                       "task.answer_type=text")
    assert status == 2
    errors = error_lines(capsys)
    assert len(errors) == 1 and "has no train.jsonl, and this task's shots come from its own train split" in errors[0]
