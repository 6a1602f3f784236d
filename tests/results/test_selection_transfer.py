"""Dev-split checkpoint selection (best / dev / final side by side) and the transfer table (conditions x tasks),
on hand-made results files; the scripts write_results.py and plot_transfer.py on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fewshot_distill.results.selection import dev_choices, selected_labels, selection_table
from fewshot_distill.results.transfer import load_task_results, transfer_table


def entry(correct: int, total: int = 10) -> dict:
    return {"accuracy": correct / total, "correct": correct, "total": total}


TEST = {"task": "gsm8k", "split": "test", "conditions": {
    "base_0shot": {"base": entry(1)}, "icl_8shot": {"base": entry(3)},
    "baseline": {"step_2": entry(5), "step_4": entry(7), "step_6": entry(6)},
    "online_v1": {"step_2": entry(8), "step_4": entry(6), "step_6": entry(7)}}}
DEV = {"task": "gsm8k", "split": "dev", "conditions": {
    "baseline": {"step_2": entry(4, 8), "step_4": entry(3, 8), "step_6": entry(4, 8)},   # tie: step_2
    "online_v1": {"step_2": entry(2, 8), "step_4": entry(5, 8), "step_6": entry(1, 8)}}}
SVAMP = {"task": "svamp", "split": "test", "conditions": {
    "base_0shot": {"base": entry(2)}, "icl_8shot": {"base": entry(4)},
    "baseline": {"step_2": entry(3), "step_4": entry(9)}, "online_v1": {"step_4": entry(5)}}}


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_dev_choices_by_accuracy_ties_to_the_earliest_step_and_by_nll_for_diagnostics():
    assert dev_choices(DEV) == {"baseline": "step_2", "online_v1": "step_4"}
    diagnostics = {"kind": "diagnostics", "conditions": {
        "base_0shot": {"base": {"nll": 0.1}},
        "online_v1": {"step_2": {"nll": 1.2}, "step_4": {"nll": 0.9}, "step_6": {"nll": 1.0}}}}
    assert dev_choices(diagnostics) == {"online_v1": "step_4"}   # lowest NLL; base rows get no choice


def test_selected_labels_under_each_rule():
    conditions, choices = TEST["conditions"], dev_choices(DEV)
    assert selected_labels(conditions, "best") == {"base_0shot": "base", "icl_8shot": "base", "baseline": "step_4",
                                                   "online_v1": "step_2"}
    assert selected_labels(conditions, "final")["baseline"] == "step_6"
    assert selected_labels(conditions, "dev", choices) == {"base_0shot": "base", "icl_8shot": "base",
                                                           "baseline": "step_2", "online_v1": "step_4"}
    with pytest.raises(ValueError, match="--dev_results"):
        selected_labels(conditions, "dev")


def test_selection_table_shows_best_dev_and_final_test_accuracy():
    table = selection_table(TEST["conditions"], dev_choices(DEV))
    assert "| best: test-selected (%) | dev: dev-selected (%) | final (%) |" in table
    assert "| LoRA SFT | 70.00 (step 4) | 50.00 (step 2) | 60.00 (step 6) |" in table
    assert "| LoRA SFT + Few-Shot Distillation | 80.00 (step 2) | 60.00 (step 4) | 70.00 (step 6) |" in table
    assert "Base model" not in table


def test_transfer_table_from_two_tasks(tmp_path):
    tasks = load_task_results([write(tmp_path, "gsm8k.json", TEST), write(tmp_path, "svamp.json", SVAMP)])
    table = transfer_table(tasks, selected_labels(TEST["conditions"], "best"))
    lines = table.splitlines()
    assert lines[0] == "| Method | Checkpoint | GSM8K (%) | SVAMP (%) |"
    assert "| Base model (8-shot ICL) | base model | 30.00 (3/10) | 40.00 (4/10) |" in lines
    assert "| LoRA SFT | step 4 | 70.00 (7/10) | 90.00 (9/10) |" in lines
    assert "| LoRA SFT + Few-Shot Distillation | step 2 | 80.00 (8/10) | — |" in lines   # not evaluated there
    with pytest.raises(ValueError, match="never merged"):
        load_task_results([write(tmp_path, "a.json", SVAMP), write(tmp_path, "b.json", SVAMP)])


def test_write_results_and_plot_transfer_scripts(tmp_path, capsys):
    from scripts import plot_transfer, write_results

    test, dev = write(tmp_path, "test.json", TEST), write(tmp_path, "dev.json", DEV)
    svamp = write(tmp_path, "svamp.json", SVAMP)
    out = tmp_path / "results.md"
    assert write_results.main(["--results", str(test), "--select", "dev", "--dev_results", str(dev),
                               "--transfer", str(test), str(svamp), "--out", str(out)]) == 0
    markdown = out.read_text()
    assert "### Checkpoint selection: best, dev, final" in markdown and "dev-selected" in markdown
    assert "each condition at its `dev` checkpoint (chosen on the dev split)" in markdown
    assert "| LoRA SFT | step 2 | 50.00 (5/10) | 30.00 (3/10) |" in markdown   # the transfer row at the dev pick
    with pytest.raises(SystemExit, match="was evaluated on the 'test' split"):
        write_results.main(["--results", str(test), "--select", "dev", "--dev_results", str(test)])
    with pytest.raises(SystemExit, match="--select dev needs --dev_results"):
        write_results.main(["--results", str(test), "--select", "dev"])
    assert plot_transfer.main(["--results", str(test), "--select", "dev", "--dev_results", str(dev),
                               "--transfer", str(test), str(svamp), "--out", str(tmp_path / "t.png"),
                               "--selection_out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 10_000 and (tmp_path / "s.png").stat().st_size > 10_000


def test_results_of_different_tasks_or_splits_are_never_merged(tmp_path):
    from fewshot_distill.results.load import load_many

    with pytest.raises(ValueError, match="different tasks"):
        load_many([write(tmp_path, "gsm8k.json", TEST), write(tmp_path, "svamp.json", SVAMP)])
    with pytest.raises(ValueError, match="different splits"):
        load_many([write(tmp_path, "test.json", TEST), write(tmp_path, "dev.json", DEV)])
    merged = load_many([write(tmp_path, "svamp.json", SVAMP)])
    assert merged["task"] == "svamp" and merged["split"] == "test"
