"""Where the few-shot rows of an evaluation come from, and what the results file records about it.

The evaluated task's own train split when it has one (GSM8K, a JSONL task with a `train.jsonl`);
otherwise GSM8K's train split (SVAMP, GSM-Hard and MATH-500 are test sets only): from `--shot_path`
(a folder with GSM8K's `train.jsonl`) or, without it, from the hub. Either way the rows come through
the row loader, so a dev split (`data.dev_examples`) is never in the shot pool. A task whose answers GSM8K's
rows do not show (`Task.gsm8k_shots_fit` false: a text task) has no such fallback.

An evaluation whose rows have no shots (base_0shot and checkpoints only) needs no shot source: without the
task's own train split and without `--shot_path` nothing is loaded (no hub access), and the results file
records `shots_from: null`.

    rows, source = load_shot_rows(cfg.data, shot_path="../shared/data/gsm8k")
    source  # {"task": "gsm8k", "split": "train", "path": "../shared/data/gsm8k", "own_train_split": False}
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fewshot_distill.tasks import Task, task_of
from fewshot_distill.utils.resources import ResourceError

GSM8K_HUB = {"dataset": "openai/gsm8k", "subset": "main"}


def task_has_train_split(task: Task, data_cfg) -> bool:
    """Whether the task's data has a train split: a file under data.path, or any hub data set."""
    name = task.data_file(data_cfg.train_split)
    if name is None:
        return False
    return Path(data_cfg.path, name).is_file() if data_cfg.path else True


def shot_data_config(data_cfg, shot_path: str | None):
    """The data config the shots are loaded with: the evaluated task's own, or GSM8K's (see module docstring)."""
    if task_has_train_split(task_of(data_cfg), data_cfg):
        return data_cfg
    return replace(data_cfg, task="gsm8k", path=shot_path, train_split="train", **GSM8K_HUB)


def load_shot_rows(data_cfg, shot_path: str | None = None, needed: bool = True) -> tuple[list[dict], dict | None]:
    """The shot pool's rows and its description for the results file (task, split, path, own train split).

    `needed` False (no row of the evaluation has shots): ([], None) unless the task's own train split or
    `shot_path` is there to load (then loaded as always, so the results file reads the same)."""
    from fewshot_distill.data.examples import load_task_rows

    task = task_of(data_cfg)
    own = task_has_train_split(task, data_cfg)
    if not own and not needed and (shot_path is None or not task.gsm8k_shots_fit):
        return [], None
    if not own and not task.gsm8k_shots_fit:
        raise ResourceError(
            f"data.path={data_cfg.path!r} has no {task.data_file(data_cfg.train_split)}, and this task's shots "
            "come from its own train split only (GSM8K's rows are no shots for it): add that file, or evaluate "
            "rows without shots only (base_0shot, checkpoints)")
    shot_cfg = shot_data_config(data_cfg, shot_path)
    rows = load_task_rows(shot_cfg, shot_cfg.train_split)
    source = {"task": shot_cfg.task, "split": shot_cfg.train_split,
              "path": shot_cfg.path if shot_cfg.path else f"{shot_cfg.dataset}/{shot_cfg.subset} (hub)",
              "own_train_split": shot_cfg is data_cfg, "dev_examples_held_out": shot_cfg.dev_examples}
    return rows, source
