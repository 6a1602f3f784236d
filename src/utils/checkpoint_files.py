"""What a checkpoint folder holds, and whether it is intact: read by training (resume) and by
evaluation (which checkpoints to evaluate), so it lives below both.

    check = verify_checkpoint("experiments/online_v1/checkpoint-200")        # for resume
    check = verify_checkpoint(folder, for_training=False)                   # for evaluation
    check.status in ("ok", "unverified", "damaged")
"""

from __future__ import annotations

from pathlib import Path

from src.utils.manifest import DAMAGED, UNVERIFIED, FolderCheck, verify_manifest

TRAINING_STATE = "training_state.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_training_only(name: str) -> bool:
    """Files only resume needs (evaluation of an adapter ignores damage to them)."""
    return name == TRAINING_STATE or (name.startswith("rng_state_") and name.endswith(".pt"))


def verify_checkpoint(folder: str | Path, for_training: bool = True) -> FolderCheck:
    """"ok", "unverified" (no manifest: written before manifests; still usable) or "damaged".

    for_training=False checks only what evaluation loads (adapter, configs), not the optimizer state.
    For resume, a checkpoint without a manifest gets the checks possible without one: its adapter and
    training state exist and the safetensors header matches the file's length. (Evaluation reports
    an unverified adapter that does not load as that entry's failure.)
    """
    folder = Path(folder)
    check = verify_manifest(folder, include=None if for_training else (lambda name: not is_training_only(name)))
    if check.status != UNVERIFIED or not for_training:
        return check
    needed = [ADAPTER_WEIGHTS, TRAINING_STATE]
    problems = [f"{name}: missing" for name in needed if not (folder / name).is_file()]
    if not problems:
        from safetensors import safe_open

        try:
            with safe_open(folder / ADAPTER_WEIGHTS, framework="pt"):
                pass
        except Exception as error:  # safetensors raises its own error type for a cut-short file
            problems.append(f"{ADAPTER_WEIGHTS}: unreadable ({str(error).splitlines()[0][:120]})")
    return FolderCheck(folder, DAMAGED, tuple(problems)) if problems else check
