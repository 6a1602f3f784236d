"""A study's YAML (configs/studies/*.yaml) read into a typed spec, expanded into its grid of runs.

A study is one model, one or more tasks (each its own grid), seeds, and conditions:
- a base-model row (`base_0shot`, `icl_{k}shot`): no training, evaluated per seed (the shots drawn with
  that seed);
- a trained condition: a training config from configs/ (e.g. configs/ablations/zeroshot_teacher.yaml) plus
  overrides. Its name must be the one fewshot_distill/methods/ gives the method and teacher context it trains, so
  labels and colours come from the registry (`condition_of`).

Overrides apply in this order (later wins): the condition's config < the task config's `data:` and `task:`
sections < `model.name` < `train_overrides` < the condition's `overrides` < `training.seed`.

    spec = load_study("configs/studies/icl_demo.yaml", seeds=[0, 1], tasks=["first_letter"])
    runs = expand_runs(spec, out_dir=Path("icl_demo_out"))
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fewshot_distill.config import Config, ConfigError, load_config
from fewshot_distill.methods import method_condition, resolve_method
from fewshot_distill.run_identity import base_conditions, BASE_LABEL, FINAL_DIR, FINAL_LABEL
from fewshot_distill.utils.checkpoint_files import verify_checkpoint

TRAIN_MODULE = "fewshot_distill.train"     # every method: the config's `method:` picks it
EVAL_SCRIPT = "scripts/eval_checkpoints.py"
EVAL_OUTPUT = "eval.json"
DIAGNOSTICS_SCRIPT = "scripts/eval_diagnostics.py"
DIAGNOSTICS_OUTPUT = "diagnostics.json"


class StudyError(ValueError):
    """A study YAML that cannot run as written; the message names the fix."""


@dataclass
class ConditionSpec:
    config: Optional[str] = None    # training config (repo-relative); None: a base-model row
    overrides: list[str] = field(default_factory=list)


@dataclass
class EvalSpec:
    test_items: Optional[int] = None  # seeded subset of the test split, the same for every run; None: all
    subset_seed: int = 0              # the subset's seed (shots of the few-shot row use each run's seed)
    max_new_tokens: int = 8
    backend: str = "hf"               # hf: transformers + peft (CPU-exact); vllm on GPUs
    batch_size: int = 16
    overrides: list[str] = field(default_factory=list)  # key=value for every evaluation
    diagnostics: bool = False         # also the held-out proxies on the same items (scripts/eval_diagnostics.py)


@dataclass
class StudySpec:
    name: str = "study"
    model: str = "models/smollm2-135m-instruct"
    tasks: dict[str, str] = field(default_factory=dict)     # task name -> task config (data: + task: used)
    default_tasks: Optional[list[str]] = None               # run when no --tasks is given; None: all
    seeds: list[int] = field(default_factory=lambda: [0])
    conditions: dict[str, ConditionSpec] = field(default_factory=dict)
    pairs: list[list[str]] = field(default_factory=list)    # [A, B]: A - B with paired intervals and tests
    train_overrides: list[str] = field(default_factory=list)
    eval: EvalSpec = field(default_factory=EvalSpec)
    threads: int = 1                  # OMP_NUM_THREADS of every launch: fixed, so reruns give the same digits
    jobs: int = 2                     # launches at a time (threads x jobs = the cores to use)
    launch: list[str] = field(default_factory=lambda: ["--num_processes", "1"])  # accelerate launch arguments
    bootstrap_resamples: int = 10_000
    bootstrap_seed: int = 0


@dataclass(frozen=True)
class TrainRun:
    task: str
    condition: str
    seed: int
    method: str
    config: str
    overrides: tuple[str, ...]
    run_dir: Path


def _dotlist(section: str, values: dict) -> list[str]:
    return [f"{section}.{key}={'null' if value is None else value}" for key, value in values.items()]


@lru_cache(maxsize=None)
def task_overrides(task_config: str) -> tuple[str, ...]:
    """The `data.*` and `task.*` settings of a task config (resolved, with its parents) as key=value."""
    cfg = load_config(task_config)
    data = {f.name: getattr(cfg.data, f.name) for f in dataclasses.fields(cfg.data)}
    task = {f.name: getattr(cfg.task, f.name) for f in dataclasses.fields(cfg.task)}
    return tuple(_dotlist("data", data) + _dotlist("task", task))


def condition_of(cfg: Config) -> tuple[str, str]:
    """(condition name, method name) of a resolved training config (fewshot_distill/methods/)."""
    method = resolve_method(cfg)
    return method_condition(method.name, cfg.distillation.teacher_context, cfg.model.finetune), method.name


def load_study(path: str | Path, seeds: list[int] | None = None, tasks: list[str] | None = None) -> StudySpec:
    """Read and check a study YAML; `seeds` / `tasks` replace its seeds and its default task list."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file not found: {path} (pass one of configs/studies/*.yaml)")
    try:
        spec: StudySpec = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudySpec), OmegaConf.load(path)))
    except OmegaConfBaseException as error:
        raise StudyError(f"{path}: {str(error).splitlines()[0]} (keys: "
                         f"{', '.join(f.name for f in dataclasses.fields(StudySpec))})") from None
    if seeds:
        spec.seeds = list(seeds)
    chosen = tasks or spec.default_tasks or list(spec.tasks)
    unknown = [t for t in chosen if t not in spec.tasks]
    if unknown:
        raise StudyError(f"{path}: no task {', '.join(unknown)}; the study defines {', '.join(spec.tasks)}")
    spec.tasks = {t: spec.tasks[t] for t in chosen}
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds):
        raise StudyError(f"{path}: seeds must be a non-empty list without repeats, got {spec.seeds}")
    if spec.threads < 1 or spec.jobs < 1:
        raise StudyError(f"{path}: threads and jobs must be >= 1, got {spec.threads} and {spec.jobs}")
    for a_b in spec.pairs:
        if len(a_b) != 2 or any(name not in spec.conditions for name in a_b):
            raise StudyError(f"{path}: pair {a_b} must name two of the conditions ({', '.join(spec.conditions)})")
    return spec


def base_rows(spec: StudySpec, task: str) -> dict[str, int]:
    """The base-model rows this task's config defines (base_0shot, icl_{k}shot) -> shot count."""
    return base_conditions(load_config(spec.tasks[task]).data.num_fewshot_examples)


def train_overrides_of(spec: StudySpec, task: str, condition: str, seed: int) -> list[str]:
    return [*task_overrides(spec.tasks[task]), f"model.name={spec.model}", *spec.train_overrides,
            *spec.conditions[condition].overrides, f"training.seed={seed}"]


def expand_runs(spec: StudySpec, out_dir: Path) -> list[TrainRun]:
    """Every training run of the grid (task x trained condition x seed), in that order, checked: each
    condition's resolved config must train the method and context its name says (fewshot_distill/methods/)."""
    runs = []
    for task in spec.tasks:
        rows = base_rows(spec, task)
        for condition, entry in spec.conditions.items():
            if entry.config is None:
                if condition not in rows:
                    raise StudyError(f"condition {condition} has no config, so it must be a base-model row "
                                     f"({', '.join(rows)}); give it a training config from configs/")
                continue
            for seed in spec.seeds:
                overrides = train_overrides_of(spec, task, condition, seed)
                try:
                    cfg = load_config(entry.config, overrides)
                except ConfigError as error:
                    raise StudyError(f"condition {condition}: {error}") from None
                try:
                    name, method = condition_of(cfg)
                except ConfigError as error:
                    raise StudyError(f"condition {condition}: {error}") from None
                if name != condition:
                    raise StudyError(
                        f"condition {condition} trains what fewshot_distill/methods/ calls {name} (method and teacher "
                        f"context of {entry.config} + its overrides); rename it {name} or change its overrides")
                runs.append(TrainRun(task, condition, seed, method, entry.config, tuple(overrides),
                                     seed_dir(out_dir, task, seed) / condition))
    return runs


def seed_dir(out_dir: Path, task: str, seed: int) -> Path:
    return Path(out_dir) / task / f"seed_{seed}"


def eval_labels(spec: StudySpec) -> dict[str, str]:
    """condition -> the results label its evaluation is stored under (base rows: base; runs: final)."""
    return {c: (BASE_LABEL if entry.config is None else FINAL_LABEL) for c, entry in spec.conditions.items()}


# --- resume ------------------------------------------------------------------------------------------------------

def run_state(run_dir: Path) -> str:
    """"done" (final/ complete), "resume" (checkpoints to continue from), "redo" (a folder with neither: a run
    that stopped before its first checkpoint, or a damaged final/) or "new"."""
    run_dir = Path(run_dir)
    final = run_dir / FINAL_DIR
    if final.is_dir() and not verify_checkpoint(final, for_training=False).damaged:
        return "done"
    if any(p.is_dir() and p.name.startswith("checkpoint-") and not p.name.endswith(".tmp")
           for p in run_dir.glob("checkpoint-*")) and not final.is_dir():
        return "resume"
    return "redo" if run_dir.exists() else "new"


def missing_evaluations(results: dict | None, wanted: dict[str, str]) -> list[str]:
    """Conditions of `wanted` (condition -> label) that an eval.json's `conditions` does not list yet."""
    done = (results or {}).get("conditions", {})
    return [c for c, label in wanted.items() if label not in done.get(c, {})]
