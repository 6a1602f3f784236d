"""A model, tokenizer or dataset that cannot be found or reached -> one line naming the fix.

transformers, huggingface_hub and datasets report a missing folder, a hub id without network, an
offline hub (HF_HUB_OFFLINE=1) or a malformed id as a nested OSError / ConnectionError /
HFValidationError ("Repo id must use alphanumeric chars" for a path that does not exist) with tens of
traceback lines. This module is the one place that turns all of them into `ResourceError`, whose
message names the setting that fixes it. `ResourceError` is a FileNotFoundError, so the scripts'
existing one-line handlers (`exit_on_user_error` in training, `main` in evaluation) catch it.

    with loading("model", cfg.model.name, fix=MODEL_FIX):
        model = AutoModelForCausalLM.from_pretrained(cfg.model.name)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

MODEL_FIX = "model.name=/local/folder"
DATA_FIX = "data.path=/folder/with/train.jsonl"
# What each kind of resource needs in a local folder to be loadable.
REQUIRED_FILES = {"model": ("config.json",), "tokenizer": ("tokenizer_config.json", "tokenizer.json")}
MAX_REASON_CHARS = 200


class ResourceError(FileNotFoundError):
    """A model, tokenizer or dataset cannot be found or reached; the message is one line with the fix."""


def hub_offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_path(name: str) -> bool:
    """A name meant as a folder: absolute, ./ ../ ~ relative, or existing. (Hub ids are `org/name`.)"""
    name = str(name)
    return (name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
            or Path(name).expanduser().exists())


def first_line(error: BaseException) -> str:
    """The first line of an error's message, shortened: enough to see the cause, never a traceback."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def check_local_folder(kind: str, name: str, fix: str) -> None:
    """Raise ResourceError when `name` is meant as a folder but is missing or lacks the needed files."""
    if not looks_like_path(name):
        return
    folder = Path(name).expanduser()
    if not folder.exists():
        raise ResourceError(f"{kind} {name!r}: no such folder ({folder.resolve()}). Set {fix} to a folder "
                            f"that holds the {kind}.")
    needed = REQUIRED_FILES.get(kind)
    if needed and folder.is_dir() and not any((folder / file).is_file() for file in needed):
        raise ResourceError(f"{kind} {name!r}: the folder has no {' or '.join(needed)}. Set {fix} to a "
                            f"folder written by save_pretrained.")


def unreachable_message(kind: str, name: str, fix: str, error: BaseException) -> str:
    where = "HF_HUB_OFFLINE=1 is set" if hub_offline() else "no network, or no such repository"
    if looks_like_path(name):
        return f"cannot load {kind} from {name} ({type(error).__name__}: {first_line(error)}). Set {fix}."
    return (f"cannot load {kind} {name!r}: it is not a local folder and the Hugging Face hub cannot "
            f"provide it ({where}: {first_line(error)}). Download it where the hub is reachable and set "
            f"{fix}.")


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]  # FileNotFoundError, ConnectionError, HTTP errors
    try:
        from huggingface_hub.errors import HFValidationError  # a path that does not exist, as a repo id
        errors.append(HFValidationError)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def loading(kind: str, name: str, fix: str):
    """Run a `from_pretrained` / `load_dataset` of `name`; "cannot find or reach" becomes ResourceError.

    kind: "model", "tokenizer" or "dataset" (used in the message and for the local-folder check).
    """
    check_local_folder(kind, name, fix)
    try:
        yield
    except ResourceError:
        raise
    except _unreachable_errors() as error:
        raise ResourceError(unreachable_message(kind, name, fix, error)) from None
