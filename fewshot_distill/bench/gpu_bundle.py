"""`make gpu-bundle`: one folder with everything an offline GPU node needs for `make gpu-check`.

Such a node (a cluster compute node, say) has a preinstalled torch / transformers / accelerate / peft
stack and no network. What the training, evaluation and gpu-check path imports beyond that stack is
listed once, in BUNDLED_WHEELS; `third_party_imports` reads the path's imports (ast, nothing imported)
and the builder refuses to write a bundle that misses one. The folder:

    wheels/          the missing wheels (pure-python), downloaded for CPython 3.10-3.13 on manylinux x86_64
    tokenizer/       the Qwen3 tokenizer (from ../shared/tokenizers/qwen3)
    model/config.json  Qwen3-1.7B's shape; the node initialises random weights from it (it cannot download them)
    data/gsm8k/      a GSM8K subset as JSONL (train.jsonl, test.jsonl)
    manifest.json    versions, files, sizes and sha256 of the above

It is at most BUNDLE_LIMIT_BYTES (56 MiB, so that it travels with a repository copy); the builder stops
with one line when it would be larger. It holds a tokenizer and data from ../shared: it is git-ignored
and never committed.

    python scripts/gpu_bundle.py --out gpu_bundle       # make gpu-bundle
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_LIMIT_BYTES = 56 * 2**20
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")
PLATFORM = "manylinux2014_x86_64"
MANIFEST = "manifest.json"

# Distribution -> pinned version: what the path imports and a preinstalled torch stack lacks (omegaconf
# for every config; math-verify and what it needs for LaTeX answers). omegaconf 2.4 no longer needs
# antlr4; latex2sympy2_extended does. Pins: the versions the project's tests run with.
BUNDLED_WHEELS = {
    "omegaconf": "2.4.0",
    "math-verify": "0.9.0",
    "latex2sympy2_extended": "1.11.0",
    "antlr4-python3-runtime": "4.13.2",
}
# The top-level module each bundled distribution provides (what `import` names).
BUNDLED_MODULES = {"omegaconf": "omegaconf", "math_verify": "math-verify",
                   "latex2sympy2_extended": "latex2sympy2_extended", "antlr4": "antlr4-python3-runtime"}
# Modules the path may import that a node with a torch stack already has (top-level import names).
NODE_PREINSTALLED = ("torch", "transformers", "accelerate", "peft", "tokenizers", "safetensors", "huggingface_hub",
                     "numpy", "yaml", "tqdm", "matplotlib", "tensorboard", "sympy", "mpmath", "packaging")
# Imported only where they are present, with a fallback the check records: vLLM (evaluation falls back
# to transformers), flash_attn (the bench skips it), datasets (hub data only; local JSONL is read
# without it), gguf (the CPU real model only), huggingface_hub's downloads (never on the check's path).
OPTIONAL_MODULES = ("vllm", "flash_attn", "datasets", "gguf")
# The entry points of the path a GPU node runs: training, evaluation, the check, the bench.
ENTRY_MODULES = ("fewshot_distill.train", "fewshot_distill.eval.evaluate", "fewshot_distill.bench.gpu_check",
                 "fewshot_distill.bench.gpu_check_stages", "fewshot_distill.bench.bench_gpu",
                 "fewshot_distill.bench.step_bench", "fewshot_distill.bench.prefix_measure")

GSM8K_TRAIN_ROWS = 1024   # enough for 20 steps x 32 examples and the 8-shot pools
GSM8K_TEST_ROWS = 128     # the check evaluates 32


class BundleError(SystemExit):
    """A bundle that cannot be built or is unusable: one line that names the fix."""


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    base = root / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports_of(path: Path) -> set[str]:
    """Absolute module names imported anywhere in `path` (lazy imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def third_party_imports(entries=ENTRY_MODULES, root: Path = REPO_ROOT) -> dict[str, set[str]]:
    """Top-level third-party module -> the package modules importing it, over every package module reachable from
    `entries` (following package imports, inside functions too). The standard library is left out."""
    seen: set[str] = set()
    todo = list(entries)
    found: dict[str, set[str]] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, root)
        if path is None:
            if module in entries:  # a renamed entry point would otherwise drop its whole import tree unseen
                raise ValueError(f"entry module {module} has no file under {root}; update ENTRY_MODULES")
            continue
        for name in _imports_of(path):
            top = name.partition(".")[0]
            if top == "fewshot_distill":
                if module_file(name, root) is not None:
                    todo.append(name)
                elif module_file(name.rpartition(".")[0], root) is not None:  # `from fewshot_distill.x import function`
                    todo.append(name.rpartition(".")[0])
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(module)
    return found


def uncovered_imports(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """The imports that neither the node's stack, the bundle nor the optional list accounts for."""
    known = set(NODE_PREINSTALLED) | set(BUNDLED_MODULES) | set(OPTIONAL_MODULES)
    return {name: users for name, users in imports.items() if name not in known}


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def unmet_requirements(requires: list[str], available: set[str], python_version: str) -> list[str]:
    """`Requires-Dist` lines (no extras asked for) whose distribution is not in `available`, on `python_version`."""
    from packaging.requirements import Requirement

    available = {_canonical(name) for name in available}
    unmet = []
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(
                {"python_version": python_version, "extra": ""}):
            continue
        if _canonical(requirement.name) not in available:
            unmet.append(line)
    return unmet


def wheel_requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def pip_download_command(python: str, python_version: str, dest: Path, wheels=BUNDLED_WHEELS) -> list[str]:
    """pip download of the pinned wheels for one CPython version (binary only, no dependency resolution:
    every needed distribution is named, and the builder checks their requirements)."""
    return [python, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps", "--platform", PLATFORM,
            "--python-version", python_version, "--implementation", "cp", "--dest", str(dest),
            *[f"{name}=={version}" for name, version in wheels.items()]]


def pip_install_command(python: str, bundle: Path, target: Path, wheels: dict[str, str]) -> list[str]:
    """The node's install: from the bundle's wheels only, no resolver, into `target` (then PYTHONPATH)."""
    return [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
            "--disable-pip-version-check", "--find-links", str(bundle / "wheels"), "--target", str(target),
            "--upgrade", *[f"{name}=={version}" for name, version in wheels.items()]]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def check_size(total_bytes: int, limit: int = BUNDLE_LIMIT_BYTES) -> None:
    if total_bytes > limit:
        raise BundleError(f"gpu bundle is {total_bytes / 2**20:.1f} MiB, over its {limit / 2**20:.0f} MiB limit: "
                          "use fewer GSM8K rows (--train-rows/--test-rows) or fewer wheels")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_subset(source: Path, dest: Path, rows: int) -> int:
    """The first `rows` JSON lines of `source` (GSM8K's own order), as they are."""
    lines = [line for line in source.read_text().splitlines() if line.strip()][:rows]
    dest.write_text("\n".join(lines) + "\n")
    return len(lines)


def model_config(tokenizer_dir: Path):
    """Qwen3-1.7B's shape (fewshot_distill/bench/step_data.py) with the tokenizer's special ids."""
    from transformers import AutoTokenizer

    from fewshot_distill.bench.step_data import qwen3_config

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = qwen3_config("qwen3-1.7b", "sdpa")
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.pad_token_id  # Qwen3 has no bos token; its config names <|endoftext|>
    return config


def find_shared(explicit: str | None, relative: str) -> Path:
    candidates = [Path(explicit)] if explicit else [REPO_ROOT / "shared" / relative,
                                                    REPO_ROOT.parent / "shared" / relative]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise BundleError(f"{relative} not found in {' or '.join(map(str, candidates))}: pass its folder "
                      f"(--tokenizer / --data)")


def build_bundle(out: Path, tokenizer_dir: Path, gsm8k_dir: Path, python: str = sys.executable,
                 train_rows: int = GSM8K_TRAIN_ROWS, test_rows: int = GSM8K_TEST_ROWS,
                 limit: int = BUNDLE_LIMIT_BYTES) -> dict:
    """Write the bundle to `out` (replacing it) and return its manifest."""
    missing = uncovered_imports(third_party_imports())
    if missing:
        raise BundleError("the GPU path imports " + ", ".join(f"{name} (in {', '.join(sorted(users))})"
                                                              for name, users in sorted(missing.items()))
                          + ": add it to BUNDLED_WHEELS or NODE_PREINSTALLED in fewshot_distill/bench/gpu_bundle.py")
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise BundleError(f"{tokenizer_dir} has no tokenizer.json: pass the Qwen3 tokenizer folder (--tokenizer)")
    for split in ("train", "test"):
        if not (gsm8k_dir / f"{split}.jsonl").is_file():
            raise BundleError(f"{gsm8k_dir} has no {split}.jsonl: pass the GSM8K folder (--data)")
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    wheels_dir = staging / "wheels"
    wheels_dir.mkdir(parents=True)
    for version in PYTHON_VERSIONS:  # pure-python wheels: the same file for every version, stored once
        result = subprocess.run(pip_download_command(python, version, wheels_dir), capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise BundleError(f"pip download for Python {version} failed ({last}): this needs PyPI access")
    wheels = sorted(wheels_dir.glob("*.whl"))
    provided = set(BUNDLED_WHEELS) | {_canonical(m) for m in NODE_PREINSTALLED} | {"pyyaml"}
    for wheel in wheels:
        for version in PYTHON_VERSIONS:
            unmet = unmet_requirements(wheel_requires(wheel), provided, version)
            if unmet:
                raise BundleError(f"{wheel.name} needs {', '.join(unmet)} on Python {version}: add it to "
                                  "BUNDLED_WHEELS in fewshot_distill/bench/gpu_bundle.py")
    (staging / "tokenizer").mkdir()
    for path in sorted(tokenizer_dir.iterdir()):  # contents only: ../shared is read-only, the bundle is not
        if path.is_file():
            shutil.copyfile(path, staging / "tokenizer" / path.name)
    (staging / "model").mkdir()
    config = model_config(tokenizer_dir)
    config.to_json_file(str(staging / "model" / "config.json"))
    data_dir = staging / "data" / "gsm8k"
    data_dir.mkdir(parents=True)
    rows = {"train": write_subset(gsm8k_dir / "train.jsonl", data_dir / "train.jsonl", train_rows),
            "test": write_subset(gsm8k_dir / "test.jsonl", data_dir / "test.jsonl", test_rows)}
    if (gsm8k_dir / "LICENSE").is_file():
        shutil.copy(gsm8k_dir / "LICENSE", data_dir / "LICENSE")

    from fewshot_distill.utils.run_info import git_state

    files = {str(path.relative_to(staging)): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
             for path in sorted(staging.rglob("*")) if path.is_file()}
    manifest = {
        "wheels": dict(BUNDLED_WHEELS), "wheel_files": [wheel.name for wheel in wheels],
        "python_versions": list(PYTHON_VERSIONS), "platform": PLATFORM,
        "model": {"shape": "qwen3-1.7b", "config": "model/config.json", "weights": "random, initialised on the node",
                  "num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
                  "vocab_size": config.vocab_size},
        "tokenizer": {"source": str(tokenizer_dir), "folder": "tokenizer"},
        "data": {"source": str(gsm8k_dir), "folder": "data/gsm8k", "rows": rows},
        "node_preinstalled": list(NODE_PREINSTALLED), "optional": list(OPTIONAL_MODULES),
        "built_with": {"python": sys.version.split()[0], "git": git_state()},
        "files": files,
    }
    manifest["total_bytes"] = sum(entry["bytes"] for entry in files.values())
    check_size(manifest["total_bytes"] + len(json.dumps(manifest, indent=2)) + 64, limit)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["total_bytes"] = folder_bytes(staging)
    check_size(manifest["total_bytes"], limit)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return manifest


def read_manifest(bundle: Path) -> dict:
    """The manifest of a bundle folder; a one-line error names the fix when it is not one."""
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not a gpu bundle (no {MANIFEST}): run `make gpu-bundle` on a machine with "
                          "PyPI access and copy the folder here, or pass GPU_BUNDLE=<that folder>")
    manifest = json.loads(path.read_text())
    absent = [name for name in manifest["files"] if not (bundle / name).is_file()]
    if absent:
        raise BundleError(f"{bundle} misses {len(absent)} file(s) of its manifest (first: {absent[0]}): copy the "
                          "whole folder again")
    return manifest
