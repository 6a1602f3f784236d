"""Finding conditions and checkpoints on disk: layouts, missing entries, full-weight and bad folders."""

from __future__ import annotations

import json

import pytest

from fewshot_distill.eval.conditions import (adapter_rank, available_checkpoints, checkpoint_kind, condition_key,
                                 discover_targets, find_condition_dir, parse_checkpoint_selector)

BASE = "base/model"


def make_adapter(folder, r=16, rank_pattern=None):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "rank_pattern": rank_pattern or {}}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def make_full_model(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_selectors_are_steps_or_final():
    assert parse_checkpoint_selector("200") == "step_200"
    assert parse_checkpoint_selector("final") == "final"
    with pytest.raises(ValueError, match="neither a step number"):
        parse_checkpoint_selector("checkpoint-200")


def test_condition_folder_found_directly_in_seed_layout_or_as_path(tmp_path):
    make_adapter(tmp_path / "experiments" / "online_v1" / "checkpoint-200")
    make_adapter(tmp_path / "experiments" / "poc" / "baseline" / "checkpoint-200")
    experiments = tmp_path / "experiments"
    assert find_condition_dir("online_v1", experiments) == experiments / "online_v1"
    assert find_condition_dir("baseline", experiments) == experiments / "poc" / "baseline"
    literal = str(experiments / "poc" / "baseline")
    assert find_condition_dir(literal, tmp_path / "elsewhere") == experiments / "poc" / "baseline"
    assert condition_key(literal) == "baseline"
    with pytest.raises(FileNotFoundError, match="--base_dir"):
        find_condition_dir("nope", experiments)


def test_checkpoints_sorted_by_step_number_and_half_written_ones_ignored(tmp_path):
    for name in ["checkpoint-1000", "checkpoint-200", "checkpoint-400.tmp", "final", "logs"]:
        make_adapter(tmp_path / name)
    assert list(available_checkpoints(tmp_path)) == ["step_200", "step_1000", "final"]


def test_missing_checkpoint_is_reported_and_skipped_not_fatal(tmp_path):
    for step in (200, 400):
        make_adapter(tmp_path / "baseline" / f"checkpoint-{step}")
    targets, problems = discover_targets(["baseline"], tmp_path, ["step_200", "step_600", "step_400"],
                                         base_model=BASE, icl_shots=8)
    assert [t.label for t in targets] == ["step_200", "step_400"]
    assert all(t.model_path == BASE and t.adapter_path.endswith(f"checkpoint-{t.label[5:]}") for t in targets)
    assert len(problems) == 1
    assert problems[0].label == "step_600" and not problems[0].fatal
    assert "checkpoint-600" in problems[0].message


def test_base_rows_and_run_folders_in_one_list(tmp_path):
    make_adapter(tmp_path / "poc" / "baseline" / "checkpoint-200")
    make_adapter(tmp_path / "poc" / "baseline" / "final")
    targets, problems = discover_targets(["base_0shot", "icl_8shot", "baseline"], tmp_path, None,
                                         base_model=BASE, icl_shots=8)
    assert problems == []
    assert [(t.condition, t.label, t.n_shots, t.adapter_path is None) for t in targets] == [
        ("base_0shot", "base", 0, True), ("icl_8shot", "base", 8, True), ("baseline", "step_200", 0, False)]
    targets, _ = discover_targets(["baseline"], tmp_path, ["final"], base_model=BASE, icl_shots=8)
    assert [t.label for t in targets] == ["final"]


def test_full_weight_checkpoint_is_its_own_model(tmp_path):
    make_full_model(tmp_path / "full_ft" / "checkpoint-200")
    assert checkpoint_kind(tmp_path / "full_ft" / "checkpoint-200") == "full"
    targets, problems = discover_targets(["full_ft"], tmp_path, ["step_200"], base_model=BASE, icl_shots=8)
    assert problems == []
    assert targets[0].model_path == str(tmp_path / "full_ft" / "checkpoint-200")
    assert targets[0].adapter_path is None


def test_folder_that_is_neither_adapter_nor_model_is_a_clear_error_for_that_entry_only(tmp_path):
    make_adapter(tmp_path / "run" / "checkpoint-200")
    bad = tmp_path / "run" / "checkpoint-400"
    bad.mkdir()
    (bad / "training_state.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="neither a peft adapter"):
        checkpoint_kind(bad)
    targets, problems = discover_targets(["run"], tmp_path, ["step_200", "step_400"], base_model=BASE,
                                         icl_shots=8)
    assert [t.label for t in targets] == ["step_200"]
    assert problems[0].fatal and "training_state.pt" in problems[0].message


def test_unknown_condition_is_fatal_problem_and_duplicates_refused(tmp_path):
    targets, problems = discover_targets(["base_0shot", "typo"], tmp_path, None, base_model=BASE, icl_shots=8)
    assert [t.condition for t in targets] == ["base_0shot"]
    assert problems[0].condition == "typo" and problems[0].fatal
    with pytest.raises(ValueError, match="twice"):
        discover_targets(["baseline", "x/baseline"], tmp_path, None, base_model=BASE, icl_shots=8)


def test_adapter_rank_includes_rank_pattern(tmp_path):
    assert adapter_rank(make_adapter(tmp_path / "a", r=16)) == 16
    assert adapter_rank(make_adapter(tmp_path / "b", r=8, rank_pattern={"q_proj": 32})) == 32
