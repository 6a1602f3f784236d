"""The NVIDIA side of a machine, read without initialising CUDA in this process.

Two problems seen only on GPU machines live here:

- Fork safety. `torch.cuda.is_available()` by default asks the CUDA runtime (`cudaGetDeviceCount`),
  which initialises the driver and "poisons" fork: a forked child that touches CUDA then dies with
  "Cannot re-initialize CUDA in forked subprocess". vLLM forks its engine process when
  `torch.cuda.is_initialized()` is false, which that call leaves false. With
  `PYTORCH_NVML_BASED_CUDA_CHECK=1` torch answers from NVML instead (torch/cuda/__init__.py,
  `is_available`). vLLM sets it on `import vllm` (vllm/env_override.py), too late for code that
  asks first; `make_cuda_check_fork_safe` sets it before that (fewshot_distill/eval/__init__.py).
- A torch build for a newer CUDA than the driver serves (the PyPI torch 2.13.0 wheel needs CUDA 13,
  i.e. driver >= 580): NVML lists the GPUs, torch sees none. `gpu_setup_problem` turns that into
  one line naming the driver, the CUDA version torch needs and the `make install-gpu CUDA=...`
  choice that fits.

    problem = gpu_setup_problem(probe_nvml(), torch.__version__, torch.version.cuda, torch.cuda.is_available())
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from dataclasses import dataclass

NVML_CHECK_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"


@dataclass(frozen=True)
class CudaBuild:
    """One `make install-gpu CUDA=<name>` choice: the torch + vLLM pair and the driver it needs."""
    name: str
    cuda: str            # CUDA runtime the torch wheel is built for
    min_driver: int      # NVIDIA driver branch that serves that CUDA version natively
    pins: str            # what the Makefile installs (tests/utils/test_gpu_env.py checks the two agree)


# Newest first. PyPI wheel metadata: torch 2.13.0 requires cuda-toolkit==13.0.3 and vllm 0.32.0 pins
# torch==2.13.0; torch 2.10.0 requires nvidia-cuda-runtime-cu12==12.8.90 and vllm 0.19.1 (the last
# vLLM pinning it) pins torch==2.10.0 and accepts transformers 5.5.1 and later.
CUDA_BUILDS = (
    CudaBuild("cu130", "13.0", 580, "torch==2.13.0 vllm==0.32.0"),
    CudaBuild("cu128", "12.8", 570, "torch==2.10.0 vllm==0.19.1"),
)
DEFAULT_CUDA_BUILD = CUDA_BUILDS[0].name
# CUDA 12.x builds also run on older 12.x drivers (CUDA minor-version compatibility) from this branch.
CUDA12_COMPAT_DRIVER = 525


@dataclass(frozen=True)
class NvmlInfo:
    gpus: int                       # 0 when NVML is missing (CPU machine) or sees no GPU
    driver: str | None = None       # e.g. "550.54.15"
    driver_cuda: str | None = None  # newest CUDA version the driver serves, e.g. "12.4"
    name: str | None = None         # the first GPU's name, e.g. "NVIDIA H100 80GB HBM3"


def make_cuda_check_fork_safe() -> None:
    """Make `torch.cuda.is_available()` answer from NVML (fork-safe); a user's own setting wins."""
    os.environ.setdefault(NVML_CHECK_ENV, "1")


def probe_nvml() -> NvmlInfo:
    """GPU count, driver version and the driver's CUDA version from libnvidia-ml (never CUDA itself)."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return NvmlInfo(0)
    if nvml.nvmlInit_v2() != 0:
        return NvmlInfo(0)
    try:
        count = ctypes.c_uint(0)
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return NvmlInfo(0)
        buffer = ctypes.create_string_buffer(96)
        driver = buffer.value.decode() if nvml.nvmlSystemGetDriverVersion(buffer, 96) == 0 else None
        cuda_version = ctypes.c_int(0)
        driver_cuda = None
        if nvml.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda_version)) == 0:
            driver_cuda = f"{cuda_version.value // 1000}.{cuda_version.value % 1000 // 10}"
        name = None
        handle = ctypes.c_void_p()
        if count.value and nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) == 0:
            if nvml.nvmlDeviceGetName(handle, buffer, 96) == 0:
                name = buffer.value.decode()
        return NvmlInfo(int(count.value), driver, driver_cuda, name)
    finally:
        nvml.nvmlShutdown()


def visible_gpus(nvml_gpus: int, cuda_visible_devices: str | None) -> int:
    """GPUs this run may use: NVML's count, narrowed by CUDA_VISIBLE_DEVICES when it is set."""
    if cuda_visible_devices is None:
        return nvml_gpus
    listed = [d for d in cuda_visible_devices.split(",") if d.strip() and d.strip() != "-1"]
    return min(nvml_gpus, len(listed))


def machine_info() -> dict:
    """The machine a measurement ran on, for its report (the benchmarks, the GPU check). GPUs come from NVML,
    so this creates no CUDA context (whose memory would be missing for a later vLLM engine)."""
    import torch

    from fewshot_distill.utils.run_info import package_versions

    nvml = probe_nvml()
    return {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, **package_versions(("transformers", "peft")),
            "cpu_count": os.cpu_count(), "load_average_1_5_15": os.getloadavg(), "nvml_gpus": nvml.gpus,
            "visible_gpus": visible_gpus(nvml.gpus, os.environ.get("CUDA_VISIBLE_DEVICES")), "gpu": nvml.name,
            "driver": nvml.driver, "driver_cuda": nvml.driver_cuda}


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()] + [0, 0]
    return parts[0], parts[1]


def _driver_branch(driver: str | None) -> int | None:
    if not driver or not driver.split(".")[0].isdigit():
        return None
    return int(driver.split(".")[0])


def fitting_build(info: NvmlInfo) -> CudaBuild | None:
    """The newest install choice this driver serves (natively, or CUDA 12 by minor-version compat)."""
    branch = _driver_branch(info.driver)
    driver_cuda = _major_minor(info.driver_cuda) if info.driver_cuda else None
    for build in CUDA_BUILDS:
        if driver_cuda is not None:
            if driver_cuda[0] >= _major_minor(build.cuda)[0]:
                return build
        elif branch is not None and branch >= (build.min_driver if build.cuda.startswith("13")
                                               else CUDA12_COMPAT_DRIVER):
            return build
    return None


def gpu_setup_problem(info: NvmlInfo, torch_version: str, torch_cuda: str | None,
                      torch_sees_gpus: bool | None) -> str | None:
    """One line when NVML lists GPUs that this torch cannot use, else None.

    torch_cuda: `torch.version.cuda` (None for a CPU build). torch_sees_gpus: the CUDA runtime's
    answer (`torch.cuda.is_available()` without the NVML check), or None where asking it would
    initialise CUDA (before vLLM forks): then the driver's CUDA version decides.
    """
    if info.gpus <= 0:
        return None
    gpus = f"{info.gpus} NVIDIA GPU{'s' if info.gpus != 1 else ''} visible to NVML (driver {info.driver or '?'}"
    gpus += f", serving CUDA up to {info.driver_cuda})" if info.driver_cuda else ")"
    build = fitting_build(info)
    fix = (f"reinstall with `make install-gpu CUDA={build.name}` ({build.pins})" if build is not None else
           f"update the NVIDIA driver (>= {CUDA_BUILDS[-1].min_driver} for CUDA={CUDA_BUILDS[-1].name}, "
           f">= {CUDA_BUILDS[0].min_driver} for CUDA={CUDA_BUILDS[0].name})")
    if torch_cuda is None:
        return f"{gpus} but torch {torch_version} is a CPU build: {fix}"
    driver_too_old = (info.driver_cuda is not None
                      and _major_minor(info.driver_cuda)[0] < _major_minor(torch_cuda)[0])
    if torch_sees_gpus is False or (torch_sees_gpus is None and driver_too_old):
        needed = next((b for b in CUDA_BUILDS if _major_minor(b.cuda)[0] == _major_minor(torch_cuda)[0]), None)
        driver_needed = f" (driver >= {needed.min_driver})" if needed is not None else ""
        return (f"{gpus} but torch {torch_version} cannot use them: it is built for CUDA {torch_cuda}"
                f"{driver_needed}. Update the driver, or {fix}")
    return None


def check_gpu_setup(fork_safe: bool) -> None:
    """Stop with `gpu_setup_problem`'s line. fork_safe=True never asks the CUDA runtime (evaluation)."""
    info = probe_nvml()
    if info.gpus <= 0:
        return
    import torch

    sees = None
    if not fork_safe:  # the CUDA runtime's own answer, whatever PYTORCH_NVML_BASED_CUDA_CHECK says
        sees = torch.cuda._is_compiled() and torch._C._cuda_getDeviceCount() > 0
    problem = gpu_setup_problem(info, torch.__version__, torch.version.cuda, sees)
    if problem:
        raise SystemExit(f"error: {problem}")
