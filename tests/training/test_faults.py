"""Faults injected into what a run leaves on disk: checkpoints, evaluation results, their manifests.

Each damage kind is what a full disk, a crashed copy or a bad block leaves: a file cut short, bytes
changed in place (same size), a file deleted. The teacher cache's faults are in teachers/test_cache.py,
unreachable models and datasets in test_resources.py, signals and the 2-process resume after damage
in test_train_e2e.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fewshot_distill.training.checkpoint import (ADAPTER_WEIGHTS, TRAINING_STATE, find_resume_checkpoint, load_checkpoint,
                                     save_final, save_checkpoint, verify_checkpoint)
from fewshot_distill.training.loop import check_output_dir
from fewshot_distill.utils.manifest import DAMAGED, MANIFEST, OK, UNVERIFIED, verify_manifest, write_manifest
from tests.conftest import REPO_ROOT, SMOKE_DATA, build_lora_student
from tests.helpers import flip_bytes, truncate


def delete(path: Path) -> None:
    path.unlink()


DAMAGE = {"truncate": truncate, "flip_bytes": flip_bytes, "delete": delete}
# What verify_* names for each kind of damage.
SYMPTOM = {"truncate": "bytes, the manifest says", "flip_bytes": "sha256 differs", "delete": "missing"}


# ----------------------------------------------------------------------------- manifest (pure)

def make_folder(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 8)
    (folder / "config.json").write_text('{"r": 8}')
    (folder / "sub" / "state.pt").write_bytes(b"state" * 100)
    return folder


def test_manifest_lists_every_file_with_size_and_hash(tmp_path):
    folder = make_folder(tmp_path / "ckpt")
    manifest = write_manifest(folder)
    assert [f["path"] for f in manifest["files"]] == ["config.json", "sub/state.pt", "weights.bin"]
    assert manifest["files"][2]["size"] == 2048
    assert json.loads((folder / MANIFEST).read_text()) == manifest
    assert verify_manifest(folder).status == OK


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", ["weights.bin", "sub/state.pt"])
def test_each_damage_is_found_and_names_the_file(tmp_path, damage, name):
    folder = make_folder(tmp_path / "ckpt")
    write_manifest(folder)
    DAMAGE[damage](folder / name)
    check = verify_manifest(folder)
    assert check.status == DAMAGED and len(check.problems) == 1
    assert check.problems[0].startswith(f"{name}: ") and SYMPTOM[damage] in check.problems[0]
    assert name in check.describe() and "\n" not in check.describe()


def test_no_manifest_is_unverified_and_extra_files_are_not_damage(tmp_path):
    folder = make_folder(tmp_path / "ckpt")
    assert verify_manifest(folder).status == UNVERIFIED
    write_manifest(folder)
    (folder / "notes.txt").write_text("added by hand later")
    assert verify_manifest(folder).status == OK


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_manifest_is_damage(tmp_path, damage):
    folder = make_folder(tmp_path / "ckpt")
    write_manifest(folder)
    DAMAGE[damage](folder / MANIFEST)
    check = verify_manifest(folder)
    # deleting the manifest makes the folder look pre-manifest; the resume checks below catch the rest
    assert check.status == (UNVERIFIED if damage == "delete" else DAMAGED)


def test_include_restricts_the_check(tmp_path):
    folder = make_folder(tmp_path / "ckpt")
    write_manifest(folder)
    truncate(folder / "sub" / "state.pt")
    assert verify_manifest(folder, include=lambda name: not name.startswith("sub/")).status == OK


# ----------------------------------------------------------------------------- real checkpoints

class Trainee:
    """A tiny peft model with its optimizer and scheduler, as the training loop holds them."""

    def __init__(self, model_dir: Path):
        from transformers import get_cosine_schedule_with_warmup

        from fewshot_distill.models.student import load_tokenizer

        self.tokenizer = load_tokenizer(str(model_dir))
        self.wrapped_model = build_lora_student(model_dir)
        trainable = [p for p in self.wrapped_model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=1e-3)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, 1, 10)

    def step(self) -> None:
        loss = sum((p.float() ** 2).sum() for p in self.wrapped_model.parameters() if p.requires_grad) + sum(
            p.sum() for n, p in self.wrapped_model.named_parameters() if "lora_B" in n)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()

    def save(self, output_dir: Path, step: int) -> Path:
        from accelerate import Accelerator

        state = {"step": step, "examples_seen": step,
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        return save_checkpoint(Accelerator(cpu=True), output_dir / f"checkpoint-{step}", self.wrapped_model,
                               self.tokenizer, "run: test\n", state)


@pytest.fixture(scope="module")
def saved_run(tiny_model_dir, tmp_path_factory):
    """checkpoint-2 and checkpoint-4 written by save_checkpoint, and final/ by save_final."""
    out = tmp_path_factory.mktemp("saved_run") / "run"
    trainee = Trainee(tiny_model_dir)
    for step in range(1, 5):
        trainee.step()
        if step % 2 == 0:
            trainee.save(out, step)
    save_final(out / "final", trainee.wrapped_model, trainee.tokenizer, "run: test\n")
    return out


def copy_run(saved_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(saved_run, out)
    return out


def test_checkpoints_and_final_carry_a_manifest_that_verifies(saved_run):
    for name in ("checkpoint-2", "checkpoint-4", "final"):
        assert (saved_run / name / MANIFEST).is_file()
        listed = {f["path"] for f in json.loads((saved_run / name / MANIFEST).read_text())["files"]}
        assert ADAPTER_WEIGHTS in listed and "adapter_config.json" in listed
        assert verify_checkpoint(saved_run / name, for_training=name != "final").status == OK
    listed = {f["path"] for f in json.loads((saved_run / "checkpoint-4" / MANIFEST).read_text())["files"]}
    assert {TRAINING_STATE, "rng_state_0.pt", "run_config.yaml"} <= listed
    assert find_resume_checkpoint(saved_run) == (saved_run / "checkpoint-4", [])


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", [ADAPTER_WEIGHTS, TRAINING_STATE, "rng_state_0.pt", "adapter_config.json"])
def test_resume_goes_back_to_the_newest_intact_checkpoint(saved_run, tmp_path, caplog, damage, name):
    out = copy_run(saved_run, tmp_path)
    DAMAGE[damage](out / "checkpoint-4" / name)
    folder, notes = find_resume_checkpoint(out)
    assert folder == out / "checkpoint-2"
    assert len(notes) == 1 and "checkpoint-4" in notes[0] and name in notes[0] and SYMPTOM[damage] in notes[0]
    with caplog.at_level("WARNING", logger="fewshot_distill"):
        assert check_output_dir(out, resume=True, overwrite=False) == out / "checkpoint-2"
    assert "going back to" in caplog.text and "(step 2)" in caplog.text and name in caplog.text


def test_resume_refuses_in_one_line_when_no_checkpoint_is_intact(saved_run, tmp_path):
    out = copy_run(saved_run, tmp_path)
    truncate(out / "checkpoint-4" / ADAPTER_WEIGHTS)
    flip_bytes(out / "checkpoint-2" / TRAINING_STATE)
    assert find_resume_checkpoint(out)[0] is None
    with pytest.raises(SystemExit) as stop:
        check_output_dir(out, resume=True, overwrite=False)
    message = str(stop.value.code)
    assert "no intact checkpoint" in message and "--overwrite" in message and "\n" not in message
    assert "checkpoint-4" in message and ADAPTER_WEIGHTS in message


def test_checkpoint_without_manifest_still_loads_with_a_note(saved_run, tiny_model_dir, tmp_path, caplog):
    out = copy_run(saved_run, tmp_path)
    for name in ("checkpoint-2", "checkpoint-4"):
        (out / name / MANIFEST).unlink()
    folder, notes = find_resume_checkpoint(out)
    assert folder == out / "checkpoint-4" and len(notes) == 1 and "not verified" in notes[0]
    trainee = Trainee(tiny_model_dir)
    state = load_checkpoint(folder, trainee.wrapped_model, trainee.optimizer, trainee.scheduler, 0)
    assert state["step"] == 4
    # without a manifest, the checks that need none still catch a cut-short adapter (the case)
    truncate(out / "checkpoint-4" / ADAPTER_WEIGHTS)
    folder, notes = find_resume_checkpoint(out)
    assert folder == out / "checkpoint-2" and ADAPTER_WEIGHTS in notes[0] and "unreadable" in notes[0]


def _save_as_if_on_gpu0(obj, path: Path) -> None:
    """torch.save with every storage tagged "cuda:0", as rank 0 of a GPU run writes its state."""
    from torch import serialization

    entry = (0, lambda storage: "cuda:0", lambda storage, location: None)
    serialization._package_registry.append(entry)
    serialization._package_registry.sort(key=lambda e: e[0])
    try:
        torch.save(obj, path)
    finally:
        serialization._package_registry.remove(entry)


def test_resume_loads_a_gpu_written_state_onto_the_cpu_then_onto_the_parameters(saved_run, tiny_model_dir,
                                                                                 tmp_path):
    # Without map_location every rank would restore the optimizer state onto cuda:0 (here: no CUDA at all).
    out = copy_run(saved_run, tmp_path)
    folder = out / "checkpoint-4"
    state = torch.load(folder / TRAINING_STATE, weights_only=False)
    _save_as_if_on_gpu0(state, folder / TRAINING_STATE)
    _save_as_if_on_gpu0(torch.load(folder / "rng_state_0.pt", weights_only=False), folder / "rng_state_0.pt")
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really names a GPU
        torch.load(folder / TRAINING_STATE, weights_only=False)
    write_manifest(folder)
    trainee = Trainee(tiny_model_dir)
    loaded = load_checkpoint(folder, trainee.wrapped_model, trainee.optimizer, trainee.scheduler, 0)
    assert loaded["step"] == 4
    restored = trainee.optimizer.state_dict()["state"]
    for index, saved in state["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert restored[index][name].device.type == "cpu"
            assert torch.equal(restored[index][name], saved[name])


def test_unverified_checkpoint_that_does_not_load_is_a_one_line_error(saved_run, tiny_model_dir, tmp_path):
    from fewshot_distill.training.checkpoint import CheckpointError

    out = copy_run(saved_run, tmp_path)
    (out / "checkpoint-4" / MANIFEST).unlink()
    truncate(out / "checkpoint-4" / TRAINING_STATE)  # torch.load fails; no light check reads it
    trainee = Trainee(tiny_model_dir)
    with pytest.raises(CheckpointError, match="not verified") as error:
        load_checkpoint(out / "checkpoint-4", trainee.wrapped_model, trainee.optimizer, trainee.scheduler, 0)
    assert "\n" not in str(error.value) and "--overwrite" in str(error.value)


# ----------------------------------------------------------------------------- evaluation

def test_evaluation_reports_a_damaged_adapter_and_runs_the_rest(saved_run, tiny_model_dir, tmp_path, capsys):
    from fewshot_distill.eval.evaluate import main

    run_dir = tmp_path / "experiments" / "cond"
    run_dir.mkdir(parents=True)
    for step in (2, 4):
        shutil.copytree(saved_run / f"checkpoint-{step}", run_dir / f"checkpoint-{step}")
    flip_bytes(run_dir / "checkpoint-4" / ADAPTER_WEIGHTS)
    truncate(run_dir / "checkpoint-2" / TRAINING_STATE)  # evaluation does not need the optimizer state
    output = tmp_path / "eval.json"
    status = main(["--config", str(REPO_ROOT / "configs" / "base.yaml"), "--conditions", "cond",
                   "--base_dir", str(tmp_path / "experiments"), "--n_samples", "2", "--output", str(output),
                   "--backend", "hf", "--max_new_tokens", "4", f"model.name={tiny_model_dir}",
                   f"data.path={SMOKE_DATA}"])
    assert status == 1
    err = capsys.readouterr().err
    assert "ERROR: cond/step_4:" in err and ADAPTER_WEIGHTS in err and "sha256 differs" in err
    assert list(json.loads(output.read_text())["conditions"]["cond"]) == ["step_2"]


# ----------------------------------------------------------------------------- results files

def finished_results(tmp_path) -> tuple[Path, Path]:
    from fewshot_distill.eval.runner import predictions_path
    from tests.helpers import ScriptedBackend, run_scripted_eval

    run_scripted_eval(tmp_path, ScriptedBackend())
    return tmp_path / "eval.json", predictions_path(tmp_path / "eval.json")


def reopen(tmp_path):
    from fewshot_distill.eval.runner import ResultsStore
    from tests.helpers import header

    return ResultsStore(tmp_path / "eval.json", header())


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("which", ["results", "predictions"])
def test_damaged_results_file_is_a_one_line_error_naming_overwrite(tmp_path, damage, which):
    from fewshot_distill.eval.runner import DamagedResultsError

    results, predictions = finished_results(tmp_path)
    before = predictions.read_bytes()
    DAMAGE[damage](results if which == "results" else predictions)
    if which == "results" and damage == "delete":
        reopen(tmp_path)  # no results file: a fresh evaluation, the old predictions are replaced
        assert predictions.read_text() == ""
        return
    with pytest.raises(DamagedResultsError, match="--overwrite") as error:
        reopen(tmp_path)
    assert "\n" not in str(error.value)
    if which == "predictions":
        assert str(predictions) in str(error.value)
        assert (damage == "delete") == (not predictions.exists())
        if damage != "delete":
            assert predictions.read_bytes() != before  # left as found: nothing is rewritten


def test_a_line_cut_short_by_a_crash_is_dropped_but_garbage_in_the_middle_is_not(tmp_path):
    from fewshot_distill.eval.runner import DamagedResultsError

    _, predictions = finished_results(tmp_path)
    good = predictions.read_text()
    predictions.write_text(good + '{"condition": "baseline", "lab')  # the crash case
    reopen(tmp_path)
    assert predictions.read_text() == good
    lines = good.splitlines(keepends=True)
    predictions.write_text("".join(lines[:3] + ['{"condition": "baseline", "lab\n'] + lines[3:]))
    with pytest.raises(DamagedResultsError, match="line 4 is not JSON"):
        reopen(tmp_path)


def test_prediction_rows_that_do_not_match_the_results_are_damage(tmp_path):
    from fewshot_distill.eval.runner import DamagedResultsError

    _, predictions = finished_results(tmp_path)
    lines = predictions.read_text().splitlines(keepends=True)
    predictions.write_text("".join(lines[:-1]))  # a finished entry lost a row
    with pytest.raises(DamagedResultsError, match="2 prediction rows for baseline/step_400"):
        reopen(tmp_path)
    predictions.write_text("".join(lines[:-1]) + '{"what": 1}\n')
    with pytest.raises(DamagedResultsError, match="not a prediction row"):
        reopen(tmp_path)


def test_results_json_that_is_not_a_results_file_is_refused(tmp_path):
    from fewshot_distill.eval.runner import DamagedResultsError

    results, _ = finished_results(tmp_path)
    results.write_text(json.dumps({"model": "base-model", "conditions": {"baseline": [1, 2]}}))
    with pytest.raises(DamagedResultsError, match="conditions.baseline"):
        reopen(tmp_path)


def test_evaluation_script_with_damaged_results_exits_with_one_line(tmp_path, tiny_model_dir, capsys):
    """The evaluation entry point (scripts/eval_checkpoints.py calls it), in-process: a finished run, then
    bytes flipped in its predictions file; the re-run ends with status 2 and one last line naming --overwrite."""
    from fewshot_distill.eval.evaluate import main

    args = ["--config", str(REPO_ROOT / "configs" / "base.yaml"), "--conditions", "base_0shot", "--n_samples", "2",
            "--output", str(tmp_path / "eval.json"), "--backend", "hf", "--max_new_tokens", "4",
            f"model.name={tiny_model_dir}", f"data.path={SMOKE_DATA}"]
    assert main(args) == 0
    flip_bytes(tmp_path / "eval.predictions.jsonl")
    capsys.readouterr()
    assert main(args) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert "--overwrite" in stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- training logs

def test_resume_drops_unreadable_metrics_lines_and_later_steps(tmp_path, caplog):
    from fewshot_distill.training.loop import MetricsLogger

    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": step, "train/ce_loss": 1.0 / step}) for step in (1, 2, 3, 4)]
    path.write_text("\n".join(lines[:2]) + "\n\x00\xff garbage\n" + "\n".join(lines[2:]) + '\n{"step": 5, "tr')
    with caplog.at_level("WARNING", logger="fewshot_distill"):
        MetricsLogger(tmp_path, start_step=3, enabled=True).close()
    assert path.read_text() == "\n".join(lines[:3]) + "\n"
    assert "dropped 2 unreadable line(s)" in caplog.text
