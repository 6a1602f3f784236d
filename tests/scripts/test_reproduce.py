"""scripts/reproduce.sh end to end on CPU with the tiny model (environment overrides stand in for GPUs):
two 2-process gloo training runs, accuracy of every checkpoint (transformers backend), held-out
diagnostics, figures; then an interrupted run is resumed by re-running the same command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SMOKE_DATA

pytestmark = pytest.mark.slow


def reproduce(out, model_dir, **env_overrides) -> subprocess.CompletedProcess:
    train = (f"model.name={model_dir} data.path={SMOKE_DATA} data.num_workers=0 training.max_steps=4 "
             "training.save_steps=2 training.logging_steps=1 training.eval_steps=4 training.bf16=false "
             "data.num_fewshot_examples=2 data.max_train_examples=16 eval.held_out_examples=4 eval.mse_top_k=16")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable,
           "OUT": str(out), "N_GPUS": "2", "PER_DEVICE": "2", "GLOBAL_BATCH": "8", "CONTROLS": "no",
           "TRAIN_OVERRIDES": train,
           "EVAL_OVERRIDES": f"model.name={model_dir} data.path={SMOKE_DATA} data.num_fewshot_examples=2 "
                             "eval.mse_top_k=16",
           "EVAL_ARGS": "--n_samples 4 --backend hf --max_new_tokens 8",
           "DIAG_SAMPLES": "4", **env_overrides}
    return subprocess.run(["bash", "scripts/reproduce.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def test_reproduce_trains_evaluates_plots_and_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "repro"
    first = reproduce(out, tiny_model_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 processes x 2 per device x 2 accumulation = global batch 8" in first.stdout
    for run in ("baseline", "online_v1"):
        info = json.loads((out / "experiments" / run / "run_info.json").read_text())
        assert info["world_size"] == 2
        config = (out / "experiments" / run / "run_config.yaml").read_text()
        assert "gradient_accumulation_steps: 2" in config
    accuracy = json.loads((out / "eval.json").read_text())["conditions"]
    assert set(accuracy) == {"base_0shot", "icl_2shot", "baseline", "online_v1"}
    assert set(accuracy["online_v1"]) == {"step_2", "step_4"}
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert set(diagnostics["conditions"]["baseline"]) == {"step_2", "step_4"}
    for figure in ("loss_comparison.png", "main_comparison.png", "icl_gap_closed.png",
                   "diagnostics_per_checkpoint.png", "eval_curves.png", "results.md", "diagnostics.md"):
        assert (out / figure).is_file(), figure

    # An interrupted run: only its first checkpoint survives. The same command resumes it.
    baseline = out / "experiments" / "baseline"
    shutil.rmtree(baseline / "final")
    shutil.rmtree(baseline / "checkpoint-4")
    again = reproduce(out, tiny_model_dir)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "== train baseline --resume" in again.stdout
    assert "online_v1: finished earlier" in again.stdout
    assert "resumed from" in again.stderr and (baseline / "final" / "adapter_config.json").is_file()


def test_reproduce_refuses_a_gpu_count_that_does_not_divide_the_global_batch(tiny_model_dir, tmp_path):
    result = reproduce(tmp_path / "bad", tiny_model_dir, N_GPUS="3", PER_DEVICE="4")
    assert result.returncode != 0
    assert "not divisible by 3 GPUs x 4 per device" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_reproduce_with_a_dev_split_reports_dev_selection_beside_best(tiny_model_dir, tmp_path):
    out = tmp_path / "dev"
    result = reproduce(out, tiny_model_dir, DEV_EXAMPLES="8", N_GPUS="1", PER_DEVICE="2", GLOBAL_BATCH="4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for run in ("baseline", "online_v1"):
        assert "dev_examples: 8" in (out / "experiments" / run / "run_config.yaml").read_text()
    dev = json.loads((out / "dev_eval.json").read_text())
    assert dev["split"] == "dev" and set(dev["conditions"]) == {"baseline", "online_v1"}
    assert {e["total"] for labels in dev["conditions"].values() for e in labels.values()} == {4}  # --n_samples 4
    assert json.loads((out / "eval.json").read_text())["prompting"]["shots_from"]["dev_examples_held_out"] == 8
    results = (out / "results.md").read_text()
    assert "### Checkpoint selection: best, dev, final" in results and "dev-selected" in results
    assert (out / "checkpoint_selection.png").is_file()
