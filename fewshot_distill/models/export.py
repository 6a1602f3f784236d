"""A trained run's checkpoint as a standalone model folder that transformers and vLLM load with no adapter.

    out = export_run("experiments/baseline", "final", "exported/baseline", dtype="bf16")
    # out/: config.json, model.safetensors, generation_config.json, tokenizer files, export_info.json

A LoRA checkpoint is merged on a fresh float32 load of its base model (W + s·BA computed in float32,
then cast once to the chosen dtype: merging in bf16 would round twice); a full fine-tuning
checkpoint is already a model and is only cast. The base model and the default dtype come from the
run's recorded config (`run_config.yaml`, saved in every checkpoint): training.bf16 -> bf16, else fp32.
A relative model.name is read from the current folder, as training read it (the repository root).
The folder is written next to OUT as OUT.tmp and renamed when complete.

Every problem a user can fix (no such run, no such step, a damaged checkpoint, OUT not empty) is an
`ExportError` whose one-line message names the fix.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError

from fewshot_distill.run_identity import available_checkpoints, checkpoint_step, FINAL_LABEL, label_step, RUN_INFO_FILE, step_label
from fewshot_distill.utils.checkpoint_files import ADAPTER_CONFIG, checkpoint_kind, verify_checkpoint
from fewshot_distill.utils.resources import ResourceError

logger = logging.getLogger(__name__)

EXPORT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
EXPORT_INFO = "export_info.json"
RUN_CONFIG = "run_config.yaml"


class ExportError(ValueError):
    """A run, step or output folder that cannot be exported as asked; the message names the fix."""


def find_checkpoint(run_dir: str | Path, step: str | int) -> Path:
    """The checkpoint folder of `step` ("final", or an optimizer step such as 200) in a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"no run folder {run_dir}: pass the output_dir of a training run (RUN=, --run), "
                          "e.g. experiments/baseline")
    text = str(step).strip()
    if text != FINAL_LABEL and not text.isdigit():
        raise ExportError(f"step {text!r} is neither an optimizer step (e.g. 200) nor '{FINAL_LABEL}': "
                          "pass STEP= / --step as one of them")
    found = available_checkpoints(run_dir)
    label = FINAL_LABEL if text == FINAL_LABEL else step_label(int(text))
    if not found:
        raise ExportError(f"{run_dir} has no checkpoint-* or final folder: pass the output_dir of a training run "
                          "(RUN=, --run)")
    if label not in found:
        have = ", ".join(FINAL_LABEL if name == FINAL_LABEL else str(label_step(name)) for name in found)
        raise ExportError(f"{run_dir} has no checkpoint for step {text} (it has: {have}): pass STEP= / --step as "
                          "one of those")
    return found[label]


def read_run_config(checkpoint: Path) -> dict:
    """The run's resolved config as saved beside its weights (else the run folder's copy); {} without one."""
    from omegaconf import OmegaConf

    for path in (checkpoint / RUN_CONFIG, checkpoint.parent / RUN_CONFIG):
        if path.is_file():
            return OmegaConf.to_container(OmegaConf.load(path))
    return {}


def default_dtype(run_config: dict) -> str:
    """The dtype a run trained in: bf16 under training.bf16 (the default), else fp32."""
    return "bf16" if run_config.get("training", {}).get("bf16", True) else "fp32"


def base_model_of(checkpoint: Path, run_config: dict) -> str | None:
    """The base model an adapter was trained on: the run's model.name, else the adapter's own record."""
    name = run_config.get("model", {}).get("name")
    if name:
        return str(name)
    adapter_config = checkpoint / ADAPTER_CONFIG
    if adapter_config.is_file():
        return json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    return None


def check_output_dir(out: Path) -> None:
    """OUT may be new or an empty folder: exporting never overwrites anything."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not empty: pass a new folder as OUT= / --out, or delete it first")


def merged_model(checkpoint: Path, kind: str, base_model: str | None):
    """The checkpoint as one plain causal LM in float32: the adapter merged into its base, or the full model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from fewshot_distill.models.student import load_base_model

    if kind == "full":
        return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    if not base_model:
        raise ExportError(f"{checkpoint}: no base model recorded (no model.name in {RUN_CONFIG}, no "
                          f"base_model_name_or_path in {ADAPTER_CONFIG}): pass --base_model")
    base = load_base_model(base_model, bf16=False)
    # safe_merge: a merged weight that is not finite (a damaged adapter) is an error, not a broken export.
    return PeftModel.from_pretrained(base, checkpoint).merge_and_unload(safe_merge=True)


def export_info(run_dir: Path, checkpoint: Path, kind: str, base_model: str | None, dtype: str) -> dict:
    """What was exported from where, for export_info.json: the source run, step and the commits involved."""
    from fewshot_distill.utils.run_info import git_state, package_versions

    try:
        run_info = json.loads((run_dir / RUN_INFO_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        run_info = {}
    step = checkpoint_step(checkpoint.name)
    return {"source_run": str(run_dir.resolve()), "checkpoint": str(checkpoint.resolve()),
            "step": FINAL_LABEL if step is None else step, "finetune": "lora" if kind == "adapter" else "full",
            "base_model": base_model if kind == "adapter" else None, "dtype": dtype,
            "run_git": run_info.get("git") if isinstance(run_info, dict) else None,
            "export_git": git_state(), "packages": package_versions(("torch", "transformers", "peft"))}


def export_run(run_dir: str | Path, step: str | int, out: str | Path, dtype: str | None = None,
               base_model: str | None = None) -> Path:
    """Write checkpoint `step` of `run_dir` to `out` as a standalone model folder; returns `out`.

    dtype: "bf16", "fp16" or "fp32" (None: the run's training dtype). base_model overrides the run's
    model.name (a run moved to another machine, or a base model moved since).
    """
    from fewshot_distill.models.student import load_tokenizer
    from fewshot_distill.utils.io import atomic_write_json, publish_folder

    run_dir, out = Path(run_dir), Path(out)
    if dtype is not None and dtype not in EXPORT_DTYPES:
        raise ExportError(f"dtype {dtype!r} is not one of {sorted(EXPORT_DTYPES)}: pass --dtype as one of them")
    check_output_dir(out)
    checkpoint = find_checkpoint(run_dir, step)
    check = verify_checkpoint(checkpoint, for_training=False)
    if check.damaged:
        raise ExportError(f"{check.describe()}: export another step")
    try:
        kind = checkpoint_kind(checkpoint)
    except ValueError as error:
        raise ExportError(str(error)) from None
    run_config = read_run_config(checkpoint)
    dtype = dtype or default_dtype(run_config)
    base_model = base_model or base_model_of(checkpoint, run_config)
    logger.info("exporting %s (%s) as %s -> %s", checkpoint, f"LoRA on {base_model}" if kind == "adapter"
                else "full model", dtype, out)
    try:
        model = merged_model(checkpoint, kind, base_model)
        tokenizer = load_tokenizer(str(checkpoint) if (checkpoint / "tokenizer_config.json").is_file()
                                   else base_model)
    except ResourceError as error:
        if kind != "adapter":
            raise ExportError(str(error)) from None
        reason = str(error).split(". ")[0]  # its fix names model.name; an export's is --base_model
        raise ExportError(f"the run's base model does not load ({reason}): pass --base_model <folder or hub id>"
                          ) from None
    except ExportError:
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:  # an unverified checkpoint cut short
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise ExportError(f"{checkpoint} does not load ({first_line}): export another step") from None

    model = model.to(EXPORT_DTYPES[dtype])
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / EXPORT_INFO, export_info(run_dir, checkpoint, kind, base_model, dtype))
    publish_folder(tmp, out)
    return out
