"""GPU environment checks that run on a CPU machine: fork-safe CUDA checks before vLLM starts, the
one-line message for a torch build the driver cannot serve, and the Makefile's install choices."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from fewshot_distill.utils.gpu_env import CUDA_BUILDS, DEFAULT_CUDA_BUILD, NvmlInfo, fitting_build, gpu_setup_problem
from tests.conftest import REPO_ROOT

# A subprocess: a fresh interpreter where torch is not imported yet. It pretends to be a CUDA build
# on a machine whose NVML sees one GPU, and counts calls of the runtime check that poisons fork.
FORK_SAFETY_PROBE = r"""
import importlib.abc, json, os, sys
env_at_torch_import = []

class WatchTorchImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not env_at_torch_import:
            env_at_torch_import.append(os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"))
        return None

sys.meta_path.insert(0, WatchTorchImport())
import fewshot_distill.eval.evaluate  # the entry point scripts/eval_checkpoints.py imports
from fewshot_distill.eval.backends import cuda_available, default_backend, resolve_dtype
import torch

runtime_calls = []
torch.cuda._is_compiled = lambda: True
torch._C._cuda_getDeviceCount = lambda: runtime_calls.append(1) or 1
torch.cuda._device_count_nvml = lambda: 1
backend = default_backend()
dtype = resolve_dtype("auto", cuda_available())
print(json.dumps({"env_at_torch_import": env_at_torch_import[0] if env_at_torch_import else "not imported",
                  "runtime_calls": len(runtime_calls), "initialized": torch.cuda.is_initialized(),
                  "backend": backend, "dtype": dtype}))
"""


def test_eval_entry_point_and_backend_choice_leave_cuda_uninitialised():
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    result = subprocess.run([sys.executable, "-c", FORK_SAFETY_PROBE], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["env_at_torch_import"] == "1"  # set before torch (and vLLM) is imported
    assert seen["runtime_calls"] == 0 and seen["initialized"] is False
    assert seen["dtype"] == "bfloat16"  # the GPU was still seen, through NVML


OLD_DRIVER = NvmlInfo(gpus=4, driver="550.54.15", driver_cuda="12.4")
NEW_DRIVER = NvmlInfo(gpus=1, driver="580.65.06", driver_cuda="13.0")


def test_cuda13_torch_on_a_cuda12_driver_is_one_line_naming_driver_cuda_and_install_choice():
    problem = gpu_setup_problem(OLD_DRIVER, "2.13.0+cu130", "13.0", torch_sees_gpus=False)
    assert "\n" not in problem
    for part in ("550.54.15", "4 NVIDIA GPUs", "CUDA 13.0", "driver >= 580", "make install-gpu CUDA=cu128"):
        assert part in problem, (part, problem)


def test_before_a_fork_the_driver_cuda_version_decides():
    problem = gpu_setup_problem(OLD_DRIVER, "2.13.0+cu130", "13.0", torch_sees_gpus=None)
    assert problem is not None and "CUDA=cu128" in problem
    assert gpu_setup_problem(NEW_DRIVER, "2.13.0+cu130", "13.0", torch_sees_gpus=None) is None


@pytest.mark.parametrize("info, torch_cuda, sees", [
    (NvmlInfo(0), "13.0", False),                     # CPU machine: nothing to say
    (NEW_DRIVER, "13.0", True),
    (OLD_DRIVER, "12.8", True),
])
def test_working_setups_say_nothing(info, torch_cuda, sees):
    assert gpu_setup_problem(info, "2.x", torch_cuda, sees) is None


def test_cpu_torch_on_a_gpu_machine_names_the_fitting_install():
    problem = gpu_setup_problem(NEW_DRIVER, "2.13.0+cpu", None, torch_sees_gpus=False)
    assert "CPU build" in problem and "CUDA=cu130" in problem and "\n" not in problem


def test_a_driver_too_old_for_every_choice_asks_for_a_driver_update():
    info = NvmlInfo(gpus=1, driver="470.82.01", driver_cuda="11.4")
    assert fitting_build(info) is None
    problem = gpu_setup_problem(info, "2.13.0+cu130", "13.0", torch_sees_gpus=False)
    assert "update the NVIDIA driver" in problem


def test_fitting_build_without_the_driver_cuda_version_uses_the_driver_branch():
    assert fitting_build(NvmlInfo(1, "535.104.05")).name == "cu128"
    assert fitting_build(NvmlInfo(1, "580.65.06")).name == "cu130"


def test_makefile_install_choices_match_the_check():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(rf"^CUDA\s*\?=\s*{DEFAULT_CUDA_BUILD}$", makefile, re.M)
    for build in CUDA_BUILDS:
        assert re.search(rf"CUDA_PINS_{build.name}\s*:?=\s*{re.escape(build.pins)}$", makefile, re.M), build
