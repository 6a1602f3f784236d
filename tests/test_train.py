"""The entry point's one-process outcomes that are a message or a file, in this process (CPU):
fewshot_distill/train.py's `exit_on_user_error(main)`, as under `__main__`, with the exit it ends with.

What needs real processes (2-process DDP, signals, resume) stays in tests/training/test_train_e2e.py.
"""

from __future__ import annotations

import signal
from functools import partial

import pytest

from fewshot_distill.results.metrics import read_metrics_jsonl
from tests.conftest import REPO_ROOT, SMOKE_DATA
from tests.helpers import data_copy_with_a_broken_line


@pytest.fixture
def run_script():
    """Runs a script's entry in this process with fresh accelerate settings (process-wide) and puts back
    the SIGTERM/SIGINT handlers the training loop installs."""
    from accelerate.state import AcceleratorState

    from fewshot_distill.training.loop import exit_on_user_error

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    AcceleratorState._reset_state(reset_partial_state=True)

    def run(main, config: str, output_dir, model_dir, *overrides: str) -> None:
        exit_on_user_error(partial(main, [
            "--config", str(REPO_ROOT / "configs" / config), "--output_dir", str(output_dir),
            f"model.name={model_dir}", f"data.path={SMOKE_DATA}", "training.max_steps=6", "training.save_steps=2",
            "training.logging_steps=1", "training.per_device_train_batch_size=2",
            "training.gradient_accumulation_steps=2", "training.bf16=false", "data.num_workers=0",
            "data.max_train_examples=8", *overrides]))

    yield run
    AcceleratorState._reset_state(reset_partial_state=True)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("entry", ["method key", "deprecated online_v1 script"])
def test_distillation_without_a_top_k_term_is_refused_before_setup(run_script, tiny_model_dir, tmp_path, entry):
    from fewshot_distill.train import main

    with pytest.raises(SystemExit) as stop:
        if entry == "method key":
            run_script(main, "base.yaml", tmp_path / "run", tiny_model_dir, "method=online_v1")
        else:  # src/training/train_online_v1.py with the SFT config
            run_script(partial(main, legacy_script="online_v1"), "base.yaml", tmp_path / "run", tiny_model_dir)
    text = str(stop.value.code)
    assert text.startswith("error: method online_v1 needs distillation.n_top_logits > 0") and "\n" not in text
    assert "configs/online_v1.yaml" in text
    assert not (tmp_path / "run").exists(), "the config is checked before any setup"


@pytest.mark.parametrize("overrides, message", [
    (["distillation.n_top_logits=100000"], "exceeds the model's vocabulary"),
    (["data.path=/nonexistent/gsm8k"], "has no train.jsonl"),
])
def test_bad_setup_is_a_one_line_error(run_script, tiny_model_dir, tmp_path, overrides, message):
    """A SystemExit with one line (what `python script.py` prints without a traceback), not an exception."""
    from fewshot_distill.train import main

    with pytest.raises(SystemExit) as stop:
        run_script(main, "online_v1.yaml", tmp_path / "bad", tiny_model_dir, *overrides)
    text = str(stop.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text, text


def test_non_finite_loss_stops_with_step_examples_and_checkpoint(run_script, tiny_model_dir, tmp_path):
    from fewshot_distill.train import main

    with pytest.raises(FloatingPointError) as stop:
        run_script(main, "base.yaml", tmp_path / "nan", tiny_model_dir, "training.lr=1e30", "training.warmup_steps=0")
    text = str(stop.value)
    assert "Non-finite loss at step" in text and "example ids on this rank" in text
    assert "Last good checkpoint" in text


def test_length_grouped_run_trains_and_logs(run_script, tiny_model_dir, tmp_path):
    from fewshot_distill.train import main

    out = tmp_path / "grouped"
    run_script(main, "online_v1.yaml", out, tiny_model_dir, "data.group_by_length=true", "training.max_steps=2")
    assert [m["step"] for m in read_metrics_jsonl(out / "metrics.jsonl")] == [1, 2]
    assert (out / "final" / "adapter_config.json").is_file()


@pytest.mark.parametrize("broken, overrides", [
    ("train", []),
    # test.jsonl is read by the held-out diagnostics (eval.held_out_examples rows every training.eval_steps)
    ("test", ["training.eval_steps=2", "eval.held_out_examples=2"]),
])
def test_a_truncated_jsonl_line_stops_training_with_its_file_and_line(run_script, tiny_model_dir, tmp_path,
                                                                       broken, overrides):
    from fewshot_distill.train import main

    path, line = data_copy_with_a_broken_line(SMOKE_DATA, tmp_path / "data", broken)
    with pytest.raises(SystemExit) as stop:
        run_script(main, "base.yaml", tmp_path / "run", tiny_model_dir, f"data.path={path.parent}", *overrides)
    text = str(stop.value.code)
    assert text.startswith(f"error: {path}:{line}: not a JSON object") and "fix or delete that line" in text, text
    assert "\n" not in text


def test_a_field_no_record_has_stops_training_naming_the_fields_records_have(run_script, tiny_model_dir, tmp_path):
    from fewshot_distill.train import main

    with pytest.raises(SystemExit) as stop:
        run_script(main, "base.yaml", tmp_path / "run", tiny_model_dir, "data.task=jsonl",
                   "task.question_field=problem", "task.answer_field=answer", "task.answer_type=text")
    assert str(stop.value.code) == (
        f"error: {SMOKE_DATA / 'train.jsonl'}: no record has the field task.question_field='problem'; the "
        "records have answer, question. Set task.question_field to one of them")


def test_held_out_diagnostics_during_training_on_a_text_task(run_script, tiny_model_dir, tmp_path):
    """training's eval.held_out_examples on an ICL task (task.answer_type: text): NLL, KL to the 8-shot teacher
    and the gap closed are logged at step 0 and every eval_steps."""
    from fewshot_distill.train import main

    out = tmp_path / "icl"
    run_script(main, "tasks/icl_first_letter.yaml", out, tiny_model_dir,
               f"data.path={REPO_ROOT / 'data' / 'icl' / 'first_letter'}", "training.max_steps=2",
               "training.eval_steps=2", "eval.held_out_examples=2", "eval.mse_top_k=16")
    evals = [m for m in read_metrics_jsonl(out / "metrics.jsonl") if "eval/nll" in m]
    assert [m["step"] for m in evals] == [0, 2]
    for metrics in evals:
        assert metrics["eval/kl"] > 0 and metrics["eval/gap_closed_nll"] is not None
