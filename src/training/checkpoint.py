"""Checkpoint folders: write atomically, find the latest complete one, restore training state.

    {output_dir}/checkpoint-{step}/
        adapter_config.json, adapter_model.safetensors   peft adapter (PeftModel.from_pretrained, vLLM)
        tokenizer files, run_config.yaml                  everything evaluation needs
        training_state.pt                                 optimizer, scheduler, step, data position
        rng_state_{rank}.pt                               per-rank RNG states (LoRA dropout, sampler)
        manifest.json                                     size + sha256 of every other file (written last)

Each checkpoint is written to `checkpoint-{step}.tmp/` and renamed when complete, so an interrupted
save never leaves a folder that resume or evaluation would pick up. The manifest catches damage done
after the rename (`verify_checkpoint`, src/utils/checkpoint_files.py); `--resume` goes back to the newest intact checkpoint
(`find_resume_checkpoint`). Checkpoints without a manifest (written before it existed) still load.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from src.run_identity import checkpoint_step
from src.utils.io import publish_folder
from src.utils.checkpoint_files import ADAPTER_WEIGHTS, TRAINING_STATE, verify_checkpoint  # noqa: F401
from src.utils.manifest import MANIFEST, UNVERIFIED, write_manifest



class CheckpointError(ValueError):
    """No usable checkpoint to resume from, or one that cannot be loaded; the message names the fix."""


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (with their training state), sorted by step."""
    return [(step, folder) for step, folder in checkpoint_folders(output_dir) if (folder / TRAINING_STATE).is_file()]


def checkpoint_folders(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Every `checkpoint-{N}` folder by step, with or without its training state (resume verifies them)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        step = checkpoint_step(child.name)
        if step is not None and child.is_dir():
            found.append((step, child))
    return sorted(found)


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(accelerator, folder: Path, peft_model, tokenizer, config_yaml: str,
                    training_state: dict) -> Path:
    """Write `folder` atomically from all ranks (each adds its RNG state); returns the folder."""
    tmp = folder.with_name(folder.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_states(), tmp / f"rng_state_{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        peft_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "run_config.yaml").write_text(config_yaml)
        torch.save(training_state, tmp / TRAINING_STATE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(tmp)  # last: after every rank's files, so a listed folder was complete
        publish_folder(tmp, folder)
    accelerator.wait_for_everyone()
    return folder


def save_adapter(folder: Path, peft_model, tokenizer, config_yaml: str) -> None:
    """Adapter + tokenizer + config only (the `final/` folder), written atomically. Main process only."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "run_config.yaml").write_text(config_yaml)
    write_manifest(tmp)
    publish_folder(tmp, folder)


def find_resume_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that verifies (or has no manifest), and one note per checkpoint skipped
    or unverified on the way, newest first. (None, notes) when no checkpoint is intact."""
    notes = []
    for step, folder in reversed(checkpoint_folders(output_dir)):
        check = verify_checkpoint(folder)
        if check.damaged:
            notes.append(f"{check.describe()}; skipped")
            continue
        if check.status == UNVERIFIED:
            notes.append(check.describe())
        return folder, notes
    return None, notes


def load_checkpoint(folder: Path, peft_model, optimizer, scheduler, process_index: int) -> dict:
    """Restore adapter weights, optimizer, scheduler and this rank's RNG; return the training state."""
    try:
        return _load_checkpoint(folder, peft_model, optimizer, scheduler, process_index)
    except CheckpointError:
        raise
    except (OSError, RuntimeError, EOFError, KeyError, ValueError) as error:
        if (folder / MANIFEST).is_file():
            raise  # verified files that do not load: a bug, keep the traceback
        # Unverified (pre-manifest) checkpoints can hide damage the light checks miss.
        raise CheckpointError(
            f"{folder} (no {MANIFEST}, so not verified) cannot be loaded: {type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else ''}. Delete or move that folder to resume "
            "from the one before, or start again with --overwrite.") from None


def _load_checkpoint(folder: Path, peft_model, optimizer, scheduler, process_index: int) -> dict:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_file = folder / ADAPTER_WEIGHTS
    if not adapter_file.is_file():
        raise CheckpointError(f"{folder} has no {ADAPTER_WEIGHTS}: not a complete checkpoint")
    result = set_peft_model_state_dict(peft_model, load_file(adapter_file))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise CheckpointError(f"{folder}: adapter weights do not match this LoRA config ({unexpected[:3]} ...). "
                         "Resume with the config the run was started with.")
    # Onto the CPU first: without map_location every rank would restore the tensors onto the device
    # they were saved from (rank 0's GPU). load_state_dict then moves each state tensor to its
    # parameter's device.
    state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = folder / f"rng_state_{process_index}.pt"
    if rng_file.is_file():
        restore_rng_states(torch.load(rng_file, map_location="cpu", weights_only=False))
    return state
