"""What a checkpoint folder holds, and whether it is intact: read by training (resume) and by
evaluation (which checkpoints to evaluate), so it lives below both.

    check = verify_checkpoint("experiments/online_v1/checkpoint-200")        # for resume
    check = verify_checkpoint(folder, for_training=False)                   # for evaluation
    check.status in ("ok", "unverified", "damaged")
"""

from __future__ import annotations

from pathlib import Path

from fewshot_distill.utils.manifest import DAMAGED, UNVERIFIED, FolderCheck, verify_manifest

TRAINING_STATE = "training_state.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODEL_WEIGHTS = "model.safetensors"                    # a full fine-tuning checkpoint (model.finetune=full)
MODEL_WEIGHTS_INDEX = "model.safetensors.index.json"   # a sharded model's map from tensor to file
ADAPTER_CONFIG = "adapter_config.json"                # a peft adapter folder
MODEL_CONFIG = "config.json"                          # a complete model folder


def is_training_only(name: str) -> bool:
    """Files only resume needs (evaluation of an adapter ignores damage to them)."""
    return name == TRAINING_STATE or (name.startswith(("rng_state_", "optimizer_state_")) and name.endswith(".pt"))


def verify_checkpoint(folder: str | Path, for_training: bool = True) -> FolderCheck:
    """"ok", "unverified" (no manifest: written before manifests; still usable) or "damaged".

    for_training=False checks only what evaluation loads (adapter, configs), not the optimizer state.
    For resume, a checkpoint without a manifest gets the checks possible without one: its weights
    (adapter, or a full model's files) and training state exist and the safetensors header matches the file's length. (Evaluation reports
    an unverified adapter that does not load as that entry's failure.)
    """
    folder = Path(folder)
    check = verify_manifest(folder, include=None if for_training else (lambda name: not is_training_only(name)))
    if check.status != UNVERIFIED or not for_training:
        return check
    weights = weight_files(folder)
    problems = [f"{name}: missing" for name in (weights or [ADAPTER_WEIGHTS]) + [TRAINING_STATE]
                if not (folder / name).is_file()]
    if not problems:
        from safetensors import safe_open

        for name in weights:
            try:
                with safe_open(folder / name, framework="pt"):
                    pass
            except Exception as error:  # safetensors raises its own error type for a cut-short file
                problems.append(f"{name}: unreadable ({str(error).splitlines()[0][:120]})")
    return FolderCheck(folder, DAMAGED, tuple(problems)) if problems else check


def checkpoint_kind(folder: str | Path) -> str:
    """"adapter" (peft LoRA folder) or "full" (a complete model); ValueError for anything else."""
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        return "adapter"
    if (folder / MODEL_CONFIG).is_file():
        return "full"
    present = sorted(p.name for p in folder.iterdir())[:8] if folder.is_dir() else []
    raise ValueError(
        f"{folder} is neither a peft adapter (no {ADAPTER_CONFIG}) nor a model (no {MODEL_CONFIG}); "
        f"it holds {present or 'nothing'}. Point at a checkpoint written by training "
        "(save_pretrained of the peft model) or a full model folder.")


def weight_files(folder: Path) -> list[str]:
    """The safetensors files of a checkpoint: the adapter's, a full model's (every shard its index
    lists), or [] when there are none."""
    folder = Path(folder)
    if (folder / ADAPTER_WEIGHTS).is_file():
        return [ADAPTER_WEIGHTS]
    index = folder / MODEL_WEIGHTS_INDEX
    if index.is_file():
        import json

        try:
            return sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return [MODEL_WEIGHTS_INDEX + " (unreadable)"]
    return [MODEL_WEIGHTS] if (folder / MODEL_WEIGHTS).is_file() else []


def optimizer_state_file(process_index: int) -> str:
    """Per-rank optimizer state of a sharded (FSDP) run: each rank holds the AdamW states of its shards."""
    return f"optimizer_state_{process_index}.pt"
