"""A model, tokenizer or dataset that cannot be found or reached: one line naming the fix.

In-process: the translation itself and the real loaders on a missing folder. Subprocesses (slow):
the real training, evaluation and benchmark scripts, offline (HF_HUB_OFFLINE=1) with a hub id and
with a path that does not exist; their stderr must end in one error line and hold no traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from fewshot_distill.utils.resources import (DATA_FIX, MODEL_FIX, ResourceError, check_local_folder, loading,
                                 looks_like_path)
from tests.conftest import REPO_ROOT, SMOKE_DATA

# A log line as the scripts format them ("12:34:56 INFO ...") or a tqdm bar: not the error.
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) |^tokenizing|^\s*$")


def test_paths_and_hub_ids_are_told_apart(tmp_path):
    assert looks_like_path("/nonexistent") and looks_like_path("./models/x") and looks_like_path(str(tmp_path))
    assert not looks_like_path("Qwen/Qwen3-1.7B") and not looks_like_path("gpt2")


def test_missing_folder_names_the_fix_without_calling_the_loader(tmp_path):
    with pytest.raises(ResourceError, match=re.escape(MODEL_FIX)) as error:
        check_local_folder("model", str(tmp_path / "missing"), MODEL_FIX)
    assert "no such folder" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ResourceError, match="config.json"):
        check_local_folder("model", str(tmp_path), MODEL_FIX)  # exists, but holds no model


@pytest.mark.parametrize("raised", [
    OSError("We couldn't connect to 'https://huggingface.co' to load the files\nand a second line"),
    ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)"),
])
def test_unreachable_hub_becomes_one_line(raised):
    with pytest.raises(ResourceError) as error:
        with loading("dataset", "openai/gsm8k", fix=DATA_FIX):
            raise raised
    message = str(error.value)
    assert "\n" not in message and DATA_FIX in message and "openai/gsm8k" in message
    assert isinstance(error.value, FileNotFoundError)  # the scripts' one-line handlers catch it


def test_hub_validation_error_is_translated():
    from huggingface_hub.errors import HFValidationError

    with pytest.raises(ResourceError, match=re.escape(MODEL_FIX)):
        with loading("model", "bad//id", fix=MODEL_FIX):
            raise HFValidationError("Repo id must use alphanumeric chars")


def test_other_errors_pass_through():
    with pytest.raises(KeyError):
        with loading("model", "Qwen/Qwen3-1.7B", fix=MODEL_FIX):
            raise KeyError("a bug, not a missing resource")


def test_real_loaders_on_a_missing_folder(tmp_path):
    from fewshot_distill.config import DataConfig
    from fewshot_distill.data.examples import load_task_rows
    from fewshot_distill.models.student import load_base_model, load_model_config, load_tokenizer

    missing = str(tmp_path / "nonexistent")
    for load in (load_tokenizer, lambda name: load_base_model(name, bf16=False), load_model_config):
        with pytest.raises(ResourceError, match=re.escape(MODEL_FIX)):
            load(missing)
    with pytest.raises(ResourceError, match="has no train.jsonl"):
        load_task_rows(DataConfig(path=missing), "train")


# ----------------------------------------------------------------------------- the real scripts

def offline_env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1", **extra}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not LOG_LINE.match(line)]


def assert_one_line_error(result: subprocess.CompletedProcess, fix: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ") and fix in lines[0]


TRAIN = [sys.executable, "-m", "fewshot_distill.train", "--config", "configs/online_v1.yaml"]
EVALUATE = [sys.executable, "scripts/eval_checkpoints.py", "--config", "configs/base.yaml", "--conditions",
            "base_0shot", "--backend", "hf", "--n_samples", "2"]
CASES = {
    "missing_folder": (["model.name=/nonexistent", f"data.path={SMOKE_DATA}"], MODEL_FIX),
    "hub_model_offline": (["model.name=Qwen/Qwen3-1.7B", f"data.path={SMOKE_DATA}"], MODEL_FIX),
    "hub_dataset_offline": (["data.path=null"], DATA_FIX),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("script", ["train", "evaluate"])
def test_script_with_unreachable_resource_prints_one_line(tmp_path, tiny_model_dir, case, script):
    overrides, fix = CASES[case]
    if case == "hub_dataset_offline":
        overrides = [f"model.name={tiny_model_dir}", *overrides]
    if script == "train":
        command = TRAIN + ["--output_dir", str(tmp_path / "run"), *overrides]
    else:
        command = EVALUATE + ["--output", str(tmp_path / "eval.json"), *overrides]
    result = subprocess.run(command, cwd=REPO_ROOT, env=offline_env(), capture_output=True, text=True,
                            timeout=300)
    assert_one_line_error(result, fix)
    if case == "hub_model_offline":
        assert "HF_HUB_OFFLINE=1 is set" in result.stderr


@pytest.mark.slow
def test_benchmark_with_missing_tokenizer_prints_one_line(tmp_path):
    result = subprocess.run([sys.executable, "scripts/bench_step.py", "--tokenizer", str(tmp_path / "none"),
                             "--data", str(SMOKE_DATA)], cwd=REPO_ROOT, env=offline_env(), capture_output=True,
                            text=True, timeout=300)
    assert_one_line_error(result, "--tokenizer")


@pytest.mark.slow
def test_training_with_hub_id_and_no_network_prints_one_line(tmp_path):
    """Online mode (HF_HUB_OFFLINE unset) on a machine without the hub, or with the hub and an id that
    does not exist: either way one line naming the fix (about a minute of network retries offline)."""
    env = {key: value for key, value in offline_env().items()
           if key not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    command = TRAIN + ["--output_dir", str(tmp_path / "run"), "model.name=fewshot-distill-test/no-such-model",
                       f"data.path={SMOKE_DATA}"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    # huggingface_hub's own retry warnings come first ("Retrying in 2s [Retry 2/5]"): they say the hub is
    # unreachable, and are kept; after them comes exactly one error line.
    retries = re.compile(r"Retrying in \d+s|thrown while requesting")
    stderr = "\n".join(line for line in result.stderr.splitlines() if not retries.search(line))
    assert_one_line_error(subprocess.CompletedProcess(command, result.returncode, result.stdout, stderr), MODEL_FIX)
    assert "no network, or no such repository" in stderr
