"""Names of stored outputs (fewshot_distill/run_identity.py): folder names, labels, base rows. A run's method and
condition: tests/methods/test_identity.py."""

from __future__ import annotations

import pytest

from fewshot_distill import run_identity as R
from fewshot_distill.eval.conditions import available_checkpoints, discover_targets


@pytest.mark.parametrize("step", [0, 1, 200, 1000, 123456])
def test_checkpoint_folder_and_label_round_trip(step, tmp_path):
    name = R.checkpoint_dir_name(step)
    assert name == f"checkpoint-{step}" and R.checkpoint_step(name) == step
    assert R.checkpoint_dir(tmp_path, step) == tmp_path / name
    label = R.step_label(step)
    assert label == f"step_{step}" and R.label_step(label) == step
    assert R.label_of_checkpoint_dir(name) == label
    assert R.checkpoint_dir_of_label(tmp_path, label) == tmp_path / name


def test_non_step_names():
    for name in ["checkpoint-200.tmp", "checkpoint-", "checkpoint-x", "final", "logs", "step_200"]:
        assert R.checkpoint_step(name) is None
    for label in ["base", "final", "step_", "step_2a", "checkpoint-200"]:
        assert R.label_step(label) is None
    assert R.label_of_checkpoint_dir("final") == "final" and R.label_of_checkpoint_dir("tb") is None
    assert R.checkpoint_dir_of_label("run", "final").name == "final"
    with pytest.raises(ValueError, match="names no checkpoint folder"):
        R.checkpoint_dir_of_label("run", "base")


def test_icl_row_is_named_by_its_shot_count():
    assert R.icl_condition(8) == "icl_8shot" and R.icl_shot_count("icl_8shot") == 8
    assert R.icl_condition(4) == "icl_4shot" and R.icl_shot_count("icl_4shot") == 4
    assert R.icl_shot_count("base_0shot") is None and R.icl_shot_count("online_v1") is None
    assert R.base_conditions(8) == {"base_0shot": 0, "icl_8shot": 8}
    assert R.base_conditions(3) == {"base_0shot": 0, "icl_3shot": 3}


def test_discover_targets_uses_the_configured_shot_count(tmp_path):
    targets, problems = discover_targets(["base_0shot", "icl_4shot"], tmp_path, None, "base", icl_shots=4)
    assert problems == [] and [(t.condition, t.n_shots) for t in targets] == [("base_0shot", 0), ("icl_4shot", 4)]
    targets, problems = discover_targets(["icl_8shot"], tmp_path, None, "base", icl_shots=4)
    assert targets == [] and problems[0].fatal
    assert "data.num_fewshot_examples=4" in problems[0].message and "icl_4shot" in problems[0].message


def test_available_checkpoints_labels(tmp_path):
    for name in ["checkpoint-400", "checkpoint-200", "checkpoint-600.tmp", "final"]:
        (tmp_path / name).mkdir()
    assert list(available_checkpoints(tmp_path)) == ["step_200", "step_400", "final"]
