"""Task registry: `data.task` names one entry (see src/tasks/base.py for what a task defines)."""

from __future__ import annotations

from src.tasks.base import Extraction, Task, validate_rows
from src.tasks.gsm8k import GSM8K

DEFAULT_TASK = "gsm8k"
TASKS: dict[str, Task] = {
    "gsm8k": GSM8K(),
}


def get_task(name: str = DEFAULT_TASK) -> Task:
    if name not in TASKS:
        raise ValueError(f"data.task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


__all__ = ["DEFAULT_TASK", "TASKS", "Extraction", "Task", "get_task", "validate_rows"]
