"""Checkpoint folders: write atomically, find the latest complete one, restore training state.

    {output_dir}/checkpoint-{step}/
        adapter_config.json, adapter_model.safetensors   peft adapter (PeftModel.from_pretrained, vLLM)
          or config.json, model*.safetensors            a whole model (model.finetune=full; float32,
                                                          sharded past FULL_MODEL_SHARD_SIZE; from_pretrained, vLLM)
        tokenizer files, run_config.yaml                  everything evaluation needs
        training_state.pt                                 optimizer, scheduler, step, data position
        rng_state_{rank}.pt                               per-rank RNG states (LoRA dropout, sampler)
        optimizer_state_{rank}.pt                         FSDP runs only: each rank's AdamW states of its shards
                                                          (local tensors; `local_optimizer_state`)
        manifest.json                                     size + sha256 of every other file (written last)

Each checkpoint is written to `checkpoint-{step}.tmp/` and renamed when complete, so an interrupted
save never leaves a folder that resume or evaluation would pick up. The manifest catches damage done
after the rename (`verify_checkpoint`, fewshot_distill/utils/checkpoint_files.py); `--resume` goes back to the newest intact checkpoint
(`find_resume_checkpoint`). Checkpoints without a manifest (written before it existed) still load.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from fewshot_distill.run_identity import checkpoint_step
from fewshot_distill.utils.io import publish_folder
from fewshot_distill.utils.checkpoint_files import (ADAPTER_WEIGHTS, MODEL_WEIGHTS, MODEL_WEIGHTS_INDEX,  # noqa: F401
                                       TRAINING_STATE, optimizer_state_file, verify_checkpoint, weight_files)
from fewshot_distill.utils.manifest import MANIFEST, UNVERIFIED, write_manifest

# Largest safetensors file of a full model; bigger models are split (transformers' save_pretrained).
FULL_MODEL_SHARD_SIZE = "5GB"
# Key of a sharded run's optimizer file naming the states saved as local tensors (`local_optimizer_state`).
LOCAL_SHARDS = "local_shards"


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


def save_weights(folder: Path, model, state_dict: dict | None = None,
                 max_shard_size: str = FULL_MODEL_SHARD_SIZE) -> None:
    """`save_pretrained` of the trained model: the adapter of a peft model, a plain model's every weight.

    `state_dict`: a full model's weights gathered from all ranks first (`full_state_dict`; sharded
    training), else the model's own.
    """
    if state_dict is None and hasattr(model, "peft_config"):
        model.save_pretrained(folder)  # the LoRA path, unchanged
        return
    model.save_pretrained(folder, state_dict=state_dict, max_shard_size=max_shard_size)


def full_state_dict(accelerator, prepared_model, prefix: str = "wrapped_model.") -> dict:
    """Every weight of a full fine-tuning run, keyed as the causal LM names them. Call on every rank.

    Under FSDP `get_state_dict` gathers the shards (a full state dict on the main process, per the
    plugin's state_dict_type); under DDP it is the unwrapped model's own state dict. `prefix` is the
    AnswerWindowLM attribute holding the causal LM.
    """
    state = accelerator.get_state_dict(prepared_model)
    return {name.removeprefix(prefix): tensor for name, tensor in state.items()}


def save_checkpoint(accelerator, folder: Path, peft_model, tokenizer, config_yaml: str,
                    training_state: dict, state_dict: dict | None = None,
                    max_shard_size: str = FULL_MODEL_SHARD_SIZE, rank_optimizer_state: dict | None = None) -> Path:
    """Write `folder` atomically from all ranks (each adds its RNG state); returns the folder.

    `peft_model`: the trained model (peft adapter, or a full model with `state_dict` from
    `full_state_dict`, gathered on every rank beforehand). `rank_optimizer_state`: a sharded run's
    optimizer state, written by every rank for itself (`training_state` then holds no "optimizer").
    """
    tmp = folder.with_name(folder.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_states(), tmp / f"rng_state_{accelerator.process_index}.pt")
    if rank_optimizer_state is not None:
        torch.save(local_optimizer_state(rank_optimizer_state), tmp / optimizer_state_file(accelerator.process_index))
    if accelerator.is_main_process:
        save_weights(tmp, peft_model, state_dict, max_shard_size)
        tokenizer.save_pretrained(tmp)
        (tmp / "run_config.yaml").write_text(config_yaml)
        torch.save(training_state, tmp / TRAINING_STATE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(tmp)  # last: after every rank's files, so a listed folder was complete
        publish_folder(tmp, folder)
    accelerator.wait_for_everyone()
    return folder


def save_final(folder: Path, peft_model, tokenizer, config_yaml: str, state_dict: dict | None = None,
               max_shard_size: str = FULL_MODEL_SHARD_SIZE) -> None:
    """Weights (adapter or full model) + tokenizer + config only (the `final/` folder), written
    atomically. Main process only (a full model's `state_dict` gathered on every rank beforehand)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(tmp, peft_model, state_dict, max_shard_size)
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
    if hasattr(peft_model, "peft_config"):
        _load_adapter_weights(folder, peft_model)
    else:
        load_full_weights(folder, peft_model)
    # Onto the CPU first: without map_location every rank would restore the tensors onto the device
    # they were saved from (rank 0's GPU). load_state_dict then moves each state tensor to its
    # parameter's device; a sharded run's shards are placed on their parameters' devices and meshes first.
    state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=False)
    rank_optimizer_file = folder / optimizer_state_file(process_index)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    elif rank_optimizer_file.is_file():  # a sharded run: this rank's shards' AdamW states
        saved = torch.load(rank_optimizer_file, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(sharded_optimizer_state(optimizer, saved))
    else:
        raise CheckpointError(f"{folder} has no optimizer state for rank {process_index} "
                              f"({optimizer_state_file(process_index)}): resume with the number of processes "
                              "the run was saved with")
    scheduler.load_state_dict(state["scheduler"])
    rng_file = folder / f"rng_state_{process_index}.pt"
    if rng_file.is_file():
        restore_rng_states(torch.load(rng_file, map_location="cpu", weights_only=False))
    return state


def local_optimizer_state(optimizer_state: dict) -> dict:
    """A sharded run's `optimizer.state_dict()` as one rank's file holds it: every DTensor (an AdamW state
    of an FSDP2 parameter shard) replaced by this rank's local tensor, its name listed under "local_shards".

    The file then holds plain tensors only: no DeviceMesh to unpickle, and nothing that loads onto
    a device other than the one `sharded_optimizer_state` places it on.
    """
    from torch.distributed.tensor import DTensor

    states, local_shards = {}, {}
    for index, entries in optimizer_state["state"].items():
        states[index] = {key: value.to_local() if isinstance(value, DTensor) else value
                         for key, value in entries.items()}
        local_shards[index] = sorted(key for key, value in entries.items() if isinstance(value, DTensor))
    return {**optimizer_state, "state": states, LOCAL_SHARDS: local_shards}


def sharded_optimizer_state(optimizer, saved: dict) -> dict:
    """One rank's saved optimizer state (loaded onto the CPU) for `optimizer.load_state_dict`: each shard
    rebuilt as a DTensor on its parameter's device and mesh, with its placements.

    `saved` comes from `local_optimizer_state`, or from checkpoints written before it, which hold the
    DTensors themselves (their local tensors restored onto the CPU, next to a CUDA mesh: they are
    taken out and placed the same way).
    """
    from torch.distributed.tensor import DTensor

    saved_ids = [index for group in saved["param_groups"] for index in group["params"]]
    params = [param for group in optimizer.param_groups for param in group["params"]]
    if len(saved_ids) != len(params):
        raise CheckpointError(f"the saved optimizer state holds {len(saved_ids)} parameters, this model trains "
                              f"{len(params)}: resume with the config the run was started with")
    local_shards = saved.get(LOCAL_SHARDS, {})
    states = {}
    for index, param in zip(saved_ids, params):
        if index not in saved["state"]:
            continue
        entries = dict(saved["state"][index])
        for key, value in entries.items():
            if not (isinstance(value, DTensor) or key in local_shards.get(index, ())):
                continue
            local = value.to_local() if isinstance(value, DTensor) else value
            if not isinstance(param, DTensor) or local.shape != param.to_local().shape:
                raise CheckpointError(f"the saved optimizer state {key!r} of parameter {index} is a shard of "
                                      f"shape {tuple(local.shape)}, this rank's parameter is not: resume with "
                                      "the number of processes and the FSDP config the run was saved with")
            entries[key] = DTensor.from_local(local.to(param.to_local().device), param.device_mesh,
                                              param.placements, shape=param.shape, stride=param.stride())
        states[index] = entries
    return {"state": states, "param_groups": saved["param_groups"]}


def _load_adapter_weights(folder: Path, peft_model) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_file = folder / ADAPTER_WEIGHTS
    if not adapter_file.is_file():
        hint = " (it holds a full model: resume with model.finetune=full)" if weight_files(folder) else ""
        raise CheckpointError(f"{folder} has no {ADAPTER_WEIGHTS}: not a complete checkpoint{hint}")
    result = set_peft_model_state_dict(peft_model, load_file(adapter_file))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise CheckpointError(f"{folder}: adapter weights do not match this LoRA config ({unexpected[:3]} ...). "
                         "Resume with the config the run was started with.")


def load_full_weights(folder: Path, model) -> None:
    """Copy a full checkpoint's weights (one file or the shards its index lists) into `model` in place.

    Every parameter must be in the files except the second name of a tied pair (the output
    embedding of Qwen3-1.7B shares the input's), which save_pretrained writes once.
    """
    from safetensors.torch import load_file

    files = weight_files(folder)
    if not files or files == [ADAPTER_WEIGHTS]:
        hint = " (it holds a LoRA adapter: resume with model.finetune=lora)" if files else ""
        raise CheckpointError(f"{folder} has no {MODEL_WEIGHTS} or {MODEL_WEIGHTS_INDEX}: not a complete full "
                              f"fine-tuning checkpoint{hint}")
    state = {}
    for name in files:
        state.update(load_file(folder / name))
    aliases: dict[int, list[str]] = {}  # one entry per parameter tensor: all names it goes by
    for name, param in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(param), []).append(name)
    known = {name for names in aliases.values() for name in names} | {name for name, _ in model.named_buffers()}
    missing = sorted(names[0] for names in aliases.values() if not any(name in state for name in names))
    unexpected = sorted(state.keys() - known)
    if missing or unexpected:
        raise CheckpointError(f"{folder}: its weights do not match this model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}). Resume with the model.name the run was started with.")
    if is_sharded(model):
        # FSDP2: each rank copies its shard out of the full tensors.
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))
        return
    with torch.no_grad():
        model.load_state_dict(state, strict=False)


def is_sharded(model) -> bool:
    """True when `model`'s parameters are FSDP2 shards (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())
