"""Scripts for a GPU machine, checked on the CPU: `make gpu-check` as a dry run, and `make reproduce`
turning the exact teacher cache on (issue 19)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def gpu_check(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(["make", "-s", "gpu-check", f"PYTHON={sys.executable}",
                             f"GPU_CHECK_ARGS=--dry-run --json {out} --out {tmp_path / 'runs'} {' '.join(args)}"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, json.loads(out.read_text())


@pytest.mark.slow  # three training/evaluation processes plus bench-gpu --dry-run: minutes on a small CPU
def test_make_gpu_check_dry_run_trains_both_methods_in_bf16_evaluates_and_benches(tmp_path):
    _, report = gpu_check(tmp_path)
    assert report["dry_run"] is True and report["passed"] is True and report["gpu_setup"] == "ok"
    assert report["model_source"].startswith("tiny random Qwen3")
    assert list(report["stages"]) == ["sft", "distillation", "eval", "bench"]
    for stage in ("sft", "distillation"):
        result = report["stages"][stage]
        assert result["passed"] and result["steps"] == 3 and result["examples_per_step"] == [4], result
        assert "bf16: true" in (tmp_path / "runs" / stage / "run_config.yaml").read_text()
    assert "last_dist_loss" in report["stages"]["distillation"]
    assert set(report["stages"]["eval"]["accuracy"]) == {"sft", "distillation"}
    assert report["stages"]["bench"]["fused_loss_check_passed"] is True
    assert "sdpa" in report["stages"]["bench"]["summary"]


def test_gpu_check_refuses_an_eval_without_its_training_stages(tmp_path):
    result = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--stages", "eval",
                             "--json", str(tmp_path / "x.json")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "keep those stages" in result.stderr


def test_reproduce_turns_the_exact_teacher_cache_on_and_says_so(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "N_GPUS": "2", "PER_DEVICE": "4", "GLOBAL_BATCH": "32",
           "PLAN_ONLY": "yes", "OUT": str(tmp_path / "repro")}
    result = subprocess.run(["bash", "scripts/reproduce.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "== teacher cache: disk (exact" in result.stdout
    assert "distillation runs also: distillation.teacher_cache=disk" in result.stdout
    # the configs stay the paper's: the online teacher every step
    for config in ("configs/base.yaml", "configs/online_v1.yaml"):
        text = (REPO_ROOT / config).read_text()
        assert "teacher_cache: disk" not in text and "teacher_cache: memory" not in text
    off = subprocess.run(["bash", "scripts/reproduce.sh"], cwd=REPO_ROOT, env={**env, "TEACHER_CACHE": "none"},
                         capture_output=True, text=True, timeout=120)
    assert off.returncode == 0 and "teacher cache: none" in off.stdout
