"""The study YAML (fewshot_distill/study/spec.py): grid expansion, the check that a condition's name is the one
fewshot_distill/methods/ gives what it trains, and resume detection of runs and evaluations; the launch commands
(fewshot_distill/study/runner.py). No process is started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fewshot_distill.study.runner import eval_command, evaluation_jobs, summarise, train_command
from fewshot_distill.study.spec import StudyError, expand_runs, load_study, missing_evaluations, run_state
from fewshot_distill.utils.manifest import write_manifest

STUDY = """
name: unit
model: /models/tiny
tasks:
  letters: {task}
  other: {task}
default_tasks: [letters]
seeds: [3, 5]
train_overrides: [training.max_steps=2]
eval: {{test_items: 10, subset_seed: 1, max_new_tokens: 4}}
conditions:
  base_0shot: {{}}
  icl_8shot: {{}}
  baseline: {{config: configs/base.yaml}}
  online_zeroshot: {{config: configs/ablations/zeroshot_teacher.yaml}}
  onpolicy_shuffled: {{config: configs/onpolicy.yaml, overrides: [distillation.teacher_context=shuffled_answers]}}
pairs: [[onpolicy_shuffled, online_zeroshot]]
"""


@pytest.fixture
def study_file(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("data:\n  task: jsonl\n  path: data/icl/letters\ntask:\n  question_field: input\n"
                    "  answer_field: output\n")
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(task=task))
    return path


def test_grid_is_trained_conditions_times_seeds_with_the_seed_last(study_file, tmp_path):
    spec = load_study(study_file)
    assert list(spec.tasks) == ["letters"] and spec.seeds == [3, 5]
    runs = expand_runs(spec, tmp_path / "out")
    assert [(r.condition, r.seed) for r in runs] == [("baseline", 3), ("baseline", 5), ("online_zeroshot", 3),
                                                      ("online_zeroshot", 5), ("onpolicy_shuffled", 3),
                                                      ("onpolicy_shuffled", 5)]
    first = runs[0]
    assert first.method == "baseline" and runs[2].method == "online_v1"
    assert first.run_dir == tmp_path / "out" / "letters" / "seed_3" / "baseline"
    assert first.overrides[-1] == "training.seed=3"
    assert "data.path=data/icl/letters" in first.overrides and "model.name=/models/tiny" in first.overrides
    # order: task < model < study overrides < condition overrides < seed
    shuffled = runs[4].overrides
    assert shuffled.index("training.max_steps=2") < shuffled.index("distillation.teacher_context=shuffled_answers")


def test_seeds_and_tasks_knobs_replace_the_defaults(study_file, tmp_path):
    spec = load_study(study_file, seeds=[0, 1, 2], tasks=["letters", "other"])
    assert spec.seeds == [0, 1, 2] and list(spec.tasks) == ["letters", "other"]
    assert len(expand_runs(spec, tmp_path)) == 3 * 3 * 2
    with pytest.raises(StudyError, match="no task nope; the study defines letters, other"):
        load_study(study_file, tasks=["nope"])


def test_a_condition_named_for_another_method_is_refused(study_file, tmp_path):
    study_file.write_text(study_file.read_text().replace("online_zeroshot:", "online_v1:")
                          .replace("[onpolicy_shuffled, online_zeroshot]", "[onpolicy_shuffled, online_v1]"))
    with pytest.raises(StudyError, match="condition online_v1 trains what fewshot_distill/methods/ calls online_zeroshot"):
        expand_runs(load_study(study_file), tmp_path)


def test_bad_pairs_and_unknown_keys_are_one_line_errors(study_file):
    study_file.write_text(study_file.read_text().replace("[[onpolicy_shuffled, online_zeroshot]]", "[[a, b]]"))
    with pytest.raises(StudyError, match=r"pair \['a', 'b'\] must name two of the conditions"):
        load_study(study_file)
    study_file.write_text(study_file.read_text() + "sedes: [1]\n")
    with pytest.raises(StudyError, match="sedes"):
        load_study(study_file)


def test_run_state_new_redo_resume_done(tmp_path):
    run = tmp_path / "run"
    assert run_state(run) == "new"
    run.mkdir()
    assert run_state(run) == "redo"                    # stopped before its first checkpoint
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "adapter_model.safetensors").write_bytes(b"x")
    assert run_state(run) == "resume"
    final = run / "final"
    final.mkdir()
    (final / "adapter_model.safetensors").write_bytes(b"weights")
    (final / "adapter_config.json").write_text("{}")
    write_manifest(final)
    assert run_state(run) == "done"
    (final / "adapter_model.safetensors").write_bytes(b"cut")   # damaged after the manifest: train it again
    assert run_state(run) == "redo"


def test_missing_evaluations():
    wanted = {"base_0shot": "base", "baseline": "final"}
    assert missing_evaluations(None, wanted) == ["base_0shot", "baseline"]
    assert missing_evaluations({"conditions": {"base_0shot": {"base": {}}, "baseline": {"step_2": {}}}},
                               wanted) == ["baseline"]
    assert missing_evaluations({"conditions": {"base_0shot": {"base": {}}, "baseline": {"final": {}}}}, wanted) == []


def test_launch_commands(study_file, tmp_path):
    spec = load_study(study_file)
    run = expand_runs(spec, tmp_path)[0]
    command = train_command(spec, run, "resume")
    assert command[1:7] == ["-m", "accelerate.commands.launch", "--num_processes", "1", "-m", "fewshot_distill.train"]
    assert "--resume" in command and command[-1] == "training.seed=3"
    assert "--overwrite" in train_command(spec, run, "redo")
    evaluation = eval_command(spec, "letters", 5, tmp_path, ["base_0shot", "baseline"])
    assert evaluation[1] == "scripts/eval_checkpoints.py"
    for flag, value in [("--n_samples", "10"), ("--subset_seed", "1"), ("--max_new_tokens", "4"),
                        ("--checkpoint_steps", "final"), ("--base_dir", str(tmp_path / "letters" / "seed_5"))]:
        assert evaluation[evaluation.index(flag) + 1] == value
    assert evaluation[-2:] == ["model.name=/models/tiny", "training.seed=5"]
    assert Path(evaluation[evaluation.index("--output") + 1]).name == "eval.json"


def test_diagnostics_are_launched_on_the_same_items_resumed_and_summarised(study_file, tmp_path):
    """eval.diagnostics adds scripts/eval_diagnostics.py per seed on the eval subset, skipped when its results
    list every entry; the summary then carries each condition's proxies beside its accuracy."""
    spec = load_study(study_file)
    assert [what for _, what, _ in evaluation_jobs(spec, tmp_path)] == ["evaluate letters/seed 3",
                                                                         "evaluate letters/seed 5"]
    spec.eval.diagnostics = True
    jobs = evaluation_jobs(spec, tmp_path)
    assert [what for _, what, _ in jobs] == ["evaluate letters/seed 3", "evaluate letters/seed 5",
                                             "diagnostics letters/seed 3", "diagnostics letters/seed 5"]
    command, _, log = jobs[2]
    assert command[1] == "scripts/eval_diagnostics.py" and log.name == "diagnostics.log"
    for flag, value in [("--n_samples", "10"), ("--subset_seed", "1"), ("--checkpoint_steps", "final")]:
        assert command[command.index(flag) + 1] == value
    assert "--backend" not in command and "--max_new_tokens" not in command
    assert Path(command[command.index("--output") + 1]).name == "diagnostics.json"

    labels = {"base_0shot": "base", "icl_8shot": "base", "baseline": "final", "online_zeroshot": "final",
              "onpolicy_shuffled": "final"}
    for seed in (3, 5):
        folder = tmp_path / "letters" / f"seed_{seed}"
        folder.mkdir(parents=True)
        metrics = {"nll": 1.0 + seed, "kl": 0.5, "gap_closed_nll": 0.25 * seed, "gap_closed_kl": None}
        (folder / "diagnostics.json").write_text(json.dumps(
            {"conditions": {c: {label: metrics} for c, label in labels.items()}}))
        (folder / "eval.json").write_text(json.dumps({"conditions": {c: {label: {}} for c, label in labels.items()}}))
        (folder / "eval.predictions.jsonl").write_text("".join(
            json.dumps({"condition": c, "label": label, "index": i, "correct": i % 2 == 0}) + "\n"
            for c, label in labels.items() for i in range(10)))
    assert evaluation_jobs(spec, tmp_path) == []
    summary = summarise(spec, "letters", tmp_path)
    assert summary["diagnostics"]["baseline"]["nll"]["mean"] == 5.0          # seeds 3 and 5: 4.0 and 6.0
    assert summary["diagnostics"]["baseline"]["nll"]["per_seed"] == {"3": 4.0, "5": 6.0}
    assert summary["diagnostics"]["baseline"]["gap_closed_kl"]["mean"] is None
    assert summary["conditions"]["baseline"]["mean"] == 0.5


def test_times_json_counts_parallel_launches_once_in_the_invocation_wall_time(tmp_path):
    from fewshot_distill.results.measured import icl_demo_time
    from fewshot_distill.study.runner import record_launches

    launches = [{"what": "a", "wall_s": 10.0, "cpu_s": 9.0}, {"what": "b", "wall_s": 12.0, "cpu_s": 11.0}]
    record_launches(tmp_path / "times.json", launches, wall_s=12.5)  # two jobs side by side
    record_launches(tmp_path / "times.json", launches[:1], wall_s=10.2)  # a resumed invocation appends
    times = json.loads((tmp_path / "times.json").read_text())
    first, last = times["invocations"]
    assert (first["wall_s"], first["launch_wall_s"], first["cpu_s"]) == (12.5, 22.0, 20.0)
    assert last["wall_s"] == 10.2
    line = icl_demo_time(times, {"threads": 1, "jobs": 2})
    assert line.startswith("Time of the committed run (times.json, its last invocation): 10 s wall for 1 launches, 2 at")
