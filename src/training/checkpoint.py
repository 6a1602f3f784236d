"""Checkpoint folders: write atomically, find the latest complete one, restore training state.

    {output_dir}/checkpoint-{step}/
        adapter_config.json, adapter_model.safetensors   peft adapter (PeftModel.from_pretrained, vLLM)
        tokenizer files, run_config.yaml                  everything evaluation needs
        training_state.pt                                 optimizer, scheduler, step, data position
        rng_state_{rank}.pt                               per-rank RNG states (LoRA dropout, sampler)

Each checkpoint is written to `checkpoint-{step}.tmp/` and renamed when complete, so an interrupted
save never leaves a folder that resume or evaluation would pick up.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from src.run_identity import checkpoint_step
from src.utils.io import publish_folder

TRAINING_STATE = "training_state.pt"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (with their training state), sorted by step."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        step = checkpoint_step(child.name)
        if step is not None and child.is_dir() and (child / TRAINING_STATE).is_file():
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
    publish_folder(tmp, folder)


def load_checkpoint(folder: Path, peft_model, optimizer, scheduler, process_index: int) -> dict:
    """Restore adapter weights, optimizer, scheduler and this rank's RNG; return the training state."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_file = folder / "adapter_model.safetensors"
    if not adapter_file.is_file():
        raise FileNotFoundError(f"{folder} has no adapter_model.safetensors: not a complete checkpoint")
    result = set_peft_model_state_dict(peft_model, load_file(adapter_file))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"{folder}: adapter weights do not match this LoRA config ({unexpected[:3]} ...). "
                         "Resume with the config the run was started with.")
    state = torch.load(folder / TRAINING_STATE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = folder / f"rng_state_{process_index}.pt"
    if rng_file.is_file():
        restore_rng_states(torch.load(rng_file, weights_only=False))
    return state
