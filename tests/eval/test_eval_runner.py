"""Resumable bookkeeping of the evaluation loop.

The backend (ScriptedBackend, tests/helpers.py) is a stand-in that returns fixed texts: these tests are about which entries run,
what is written and what survives a crash. Real generation is tested in test_eval_e2e.py.
"""

from __future__ import annotations

import json

import pytest

from fewshot_distill.eval.backends import Generation
from fewshot_distill.eval.conditions import EvalTarget
from fewshot_distill.eval.runner import (IncompatibleResultsError, ResultsStore, predictions_path, run_targets, score,
                             summary_table)
from tests.helpers import GOLDS, INDICES, TARGETS, Crash, ScriptedBackend, header, prompts_for, run_scripted_eval


def read_predictions(tmp_path):
    return [json.loads(line) for line in predictions_path(tmp_path / "eval.json").read_text().splitlines()]


def test_score_rows_and_metrics():
    target = TARGETS[2]
    generations = [Generation((1,), "x = 4\n#### 4"), Generation((1,), "no number"),
                   Generation((1,), "so 3 + 3 = 6")]
    metrics, rows = score(target, generations, ["4", "5", "6"], [10, 20, 30])
    assert metrics == {"accuracy": 2 / 3, "correct": 2, "total": 3, "strict_accuracy": 1 / 3, "strict_correct": 1}
    assert rows[0] == {"condition": "baseline", "label": "step_200", "index": 10, "generated": "x = 4\n#### 4",
                       "extracted": "4", "gold": "4", "correct": True,
                       "extracted_strict": "4", "correct_strict": True}
    assert rows[1]["extracted"] is None and rows[1]["correct"] is False
    # no '####' line: flexible takes the last number, strict has none
    assert (rows[2]["extracted"], rows[2]["correct"]) == ("6", True)
    assert (rows[2]["extracted_strict"], rows[2]["correct_strict"]) == (None, False)


def test_full_run_writes_schema_and_one_prediction_per_example_and_entry(tmp_path):
    backend = ScriptedBackend()
    store, failures, opened = run_scripted_eval(tmp_path, backend)
    assert failures == [] and opened == ["base-model"] and backend.closed == 1
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["subset_indices"] == INDICES and data["model"] == "base-model"
    one, three = ({"accuracy": n / 3, "correct": n, "total": 3, "strict_accuracy": n / 3, "strict_correct": n}
                  for n in (1, 3))
    assert data["conditions"] == {"base_0shot": {"base": one}, "icl_8shot": {"base": one},
                                  "baseline": {"step_200": one, "step_400": three}}
    assert data["sources"]["baseline"]["step_400"] == "runs/baseline/checkpoint-400"
    predictions = read_predictions(tmp_path)
    assert len(predictions) == 4 * 3
    assert {(p["condition"], p["label"]) for p in predictions} == {t.key for t in TARGETS}
    assert [p["index"] for p in predictions[:3]] == INDICES
    # icl_8shot got the 8-shot prompts, the others the 0-shot ones
    assert [c[0] for c in backend.calls] == [10, 18, 10, 10]
    table = summary_table(data["conditions"])
    assert "100.00%" in table and "33.33%" in table


def test_rerun_skips_finished_entries_without_starting_an_engine(tmp_path):
    run_scripted_eval(tmp_path, ScriptedBackend())
    before = predictions_path(tmp_path / "eval.json").read_text()
    backend = ScriptedBackend()
    _, failures, opened = run_scripted_eval(tmp_path, backend)
    assert failures == [] and opened == [] and backend.calls == []
    assert predictions_path(tmp_path / "eval.json").read_text() == before


def test_new_condition_added_to_an_existing_file(tmp_path):
    run_scripted_eval(tmp_path, ScriptedBackend(), targets=TARGETS[:2])
    backend = ScriptedBackend()
    _, _, opened = run_scripted_eval(tmp_path, backend)
    assert [c[1] for c in backend.calls] == ["runs/baseline/checkpoint-200", "runs/baseline/checkpoint-400"]
    data = json.loads((tmp_path / "eval.json").read_text())
    assert set(data["conditions"]) == {"base_0shot", "icl_8shot", "baseline"}
    assert len(read_predictions(tmp_path)) == 12


def test_crash_loses_only_the_entry_in_flight(tmp_path):
    with pytest.raises(Crash):
        run_scripted_eval(tmp_path, ScriptedBackend(crash_on="runs/baseline/checkpoint-400"))
    data = json.loads((tmp_path / "eval.json").read_text())
    assert set(data["conditions"]) == {"base_0shot", "icl_8shot", "baseline"}
    assert list(data["conditions"]["baseline"]) == ["step_200"]
    # a crash between appending predictions and rewriting the JSON leaves stray lines: simulate them
    with open(predictions_path(tmp_path / "eval.json"), "a") as handle:
        handle.write(json.dumps({"condition": "baseline", "label": "step_400", "index": 3}) + "\n")
        handle.write('{"condition": "baseline", "lab')  # cut mid-line
    backend = ScriptedBackend()
    run_scripted_eval(tmp_path, backend)
    assert backend.calls == [(10, "runs/baseline/checkpoint-400")]
    predictions = read_predictions(tmp_path)
    assert len(predictions) == 12
    assert sum(p["label"] == "step_400" for p in predictions) == 3


def test_overwrite_starts_from_scratch(tmp_path):
    run_scripted_eval(tmp_path, ScriptedBackend())
    backend = ScriptedBackend()
    run_scripted_eval(tmp_path, backend, targets=TARGETS[:1], overwrite=True)
    assert len(backend.calls) == 1
    data = json.loads((tmp_path / "eval.json").read_text())
    assert list(data["conditions"]) == ["base_0shot"]
    assert len(read_predictions(tmp_path)) == 3


@pytest.mark.parametrize("change", [
    {"subset_indices": [3, 7, 12]},
    {"model": "other-model"},
    {"sampling": {"temperature": 0.0, "max_new_tokens": 512}},
    {"data_fingerprint": "def"},
])
def test_existing_file_from_another_setup_is_refused(tmp_path, change):
    run_scripted_eval(tmp_path, ScriptedBackend())
    before = (tmp_path / "eval.json").read_text()
    with pytest.raises(IncompatibleResultsError, match="--overwrite") as error:
        run_scripted_eval(tmp_path, ScriptedBackend(), **change)
    assert next(iter(change)) in str(error.value)
    assert (tmp_path / "eval.json").read_text() == before


def test_a_failing_checkpoint_is_reported_and_the_rest_still_run(tmp_path):
    backend = ScriptedBackend(fail_on="runs/baseline/checkpoint-200")
    _, failures, _ = run_scripted_eval(tmp_path, backend)
    assert [(t.label, "unsupported target modules" in message) for t, message in failures] == [("step_200", True)]
    data = json.loads((tmp_path / "eval.json").read_text())
    assert list(data["conditions"]["baseline"]) == ["step_400"]
    # the failed entry is retried by the next run
    backend = ScriptedBackend()
    run_scripted_eval(tmp_path, backend)
    assert backend.calls == [(10, "runs/baseline/checkpoint-200")]


def test_engine_that_cannot_load_fails_its_entries_only(tmp_path):
    targets = TARGETS[:1] + [EvalTarget("full_ft", "step_200", "runs/full_ft/checkpoint-200")]
    store = ResultsStore(tmp_path / "eval.json", header())

    def open_backend(model_path):
        if model_path.startswith("runs/"):
            raise OSError("no weights")
        return ScriptedBackend()

    failures = run_targets(targets, store, open_backend, prompts_for, GOLDS, INDICES)
    assert [t.condition for t, _ in failures] == ["full_ft"]
    assert store.is_done("base_0shot", "base")


def test_corrupt_results_file_is_refused_with_a_fix(tmp_path):
    (tmp_path / "eval.json").write_text("{not json")
    with pytest.raises(IncompatibleResultsError, match="--overwrite"):
        ResultsStore(tmp_path / "eval.json", header())
