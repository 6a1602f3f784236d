"""Task registry: `data.task` names one entry (see fewshot_distill/tasks/base.py for what a task defines).

`TASKS` holds the tasks defined in Python; `CONFIGURED_TASKS` the ones built from the config's `task:`
section (`data.task: jsonl`, fewshot_distill/tasks/jsonl.py). `task_of(data_cfg)` is the task of a data config.
"""

from __future__ import annotations

from fewshot_distill.tasks.base import Extraction, InvalidRowsError, Task, validate_rows
from fewshot_distill.tasks.gsm8k import GSM8K
from fewshot_distill.tasks.gsm_hard import GSMHard
from fewshot_distill.tasks.jsonl import JsonlTask
from fewshot_distill.tasks.math500 import MATH500
from fewshot_distill.tasks.svamp import SVAMP

DEFAULT_TASK = "gsm8k"
TASKS: dict[str, Task] = {
    "gsm8k": GSM8K(),
    "svamp": SVAMP(),
    "gsm_hard": GSMHard(),
    "math500": MATH500(),
}
CONFIGURED_TASKS = {"jsonl": JsonlTask}
TASK_NAMES = tuple(sorted([*TASKS, *CONFIGURED_TASKS]))


def get_task(name: str = DEFAULT_TASK, settings=None) -> Task:
    """The task called `name`; a configured one (`jsonl`) is built from `settings` (the config's `task:` section)."""
    if name in CONFIGURED_TASKS:
        if settings is None:
            raise ValueError(f"data.task={name} is defined by the config's task: section (task.question_field, "
                             "task.answer_field or task.solution_field, task.answer_type); load the whole config")
        return CONFIGURED_TASKS[name](settings)
    if name not in TASKS:
        raise ValueError(f"data.task must be one of {list(TASK_NAMES)}, got {name!r}")
    return TASKS[name]


def task_of(data_cfg) -> Task:
    """The task of a `data:` config (its `task:` section travels with it, see fewshot_distill/config.py `Config`)."""
    return get_task(data_cfg.task, getattr(data_cfg, "task_settings", None))


__all__ = ["CONFIGURED_TASKS", "DEFAULT_TASK", "TASKS", "TASK_NAMES", "Extraction", "InvalidRowsError", "Task",
           "get_task", "task_of", "validate_rows"]
