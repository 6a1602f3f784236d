"""Run a study: train every run of the grid with the repo's training scripts under `accelerate launch`,
evaluate every seed's runs and base rows with scripts/eval_checkpoints.py, aggregate (fewshot_distill/results/study.py).

Resumable: a run whose final/ is complete is skipped, one with checkpoints resumes (--resume), any other
folder is trained again (--overwrite); an evaluation that lists every wanted entry is skipped, another one
is launched and continues its own results file (fewshot_distill/eval/runner.py drops an entry cut short).

With `eval.diagnostics: true` every seed is also scored by scripts/eval_diagnostics.py on the same test items
(teacher-forced NLL, KL to the 8-shot teacher, ICL gap closed), resumed the same way.

Outputs under out_dir: {task}/seed_{s}/{condition}/ (run folders), {task}/seed_{s}/eval.json (+ predictions),
{task}/seed_{s}/diagnostics.json (+ rows) with eval.diagnostics, study.json, study.md, study.png, times.json.

    python scripts/study.py --study configs/studies/icl_demo.yaml --out icl_demo_out
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from fewshot_distill.results.figures import save_figure
from fewshot_distill.results.stats import read_predictions
from fewshot_distill.results.study import study_figure, study_markdown, summarise_diagnostics, summarise_task
from fewshot_distill.eval.runner import predictions_path
from fewshot_distill.study.spec import (DIAGNOSTICS_OUTPUT, DIAGNOSTICS_SCRIPT, EVAL_OUTPUT, EVAL_SCRIPT,
                                       TRAIN_MODULE, StudySpec, TrainRun, eval_labels, expand_runs,
                                       missing_evaluations, run_state, seed_dir)
from fewshot_distill.utils.io import atomic_write_json, atomic_write_text
from fewshot_distill.utils.run_info import collect_run_info

logger = logging.getLogger("fewshot_distill.study")
REPO_ROOT = Path(__file__).resolve().parents[2]


def launch_env(spec: StudySpec) -> dict[str, str]:
    """The environment of every launch: this checkout on PYTHONPATH, a fixed thread count (CPU results depend on
    it), CPU unless GPUs are there, no hub."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": str(spec.threads),
           "MKL_NUM_THREADS": str(spec.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env.setdefault("ACCELERATE_USE_CPU", "true" if not _has_gpu() else "false")
    return env


def _has_gpu() -> bool:
    from fewshot_distill.utils.gpu_env import make_cuda_check_fork_safe

    make_cuda_check_fork_safe()
    import torch

    return torch.cuda.is_available()


def train_command(spec: StudySpec, run: TrainRun, mode: str) -> list[str]:
    """`accelerate launch -m fewshot_distill.train` of the run; mode is run_state's "new", "redo" or "resume"."""
    flag = {"new": [], "redo": ["--overwrite"], "resume": ["--resume"]}[mode]
    return [sys.executable, "-m", "accelerate.commands.launch", *spec.launch, "-m", TRAIN_MODULE, "--config", run.config,
            "--output_dir", str(run.run_dir), *flag, *run.overrides]


def eval_command(spec: StudySpec, task: str, seed: int, out_dir: Path, conditions: list[str],
                 diagnostics: bool = False) -> list[str]:
    """scripts/eval_checkpoints.py of one seed's runs and base rows (or, with `diagnostics`,
    scripts/eval_diagnostics.py on the same test items)."""
    e = spec.eval
    folder = seed_dir(out_dir, task, seed)
    script, output = (DIAGNOSTICS_SCRIPT, DIAGNOSTICS_OUTPUT) if diagnostics else (EVAL_SCRIPT, EVAL_OUTPUT)
    command = [sys.executable, script, "--config", spec.tasks[task], "--conditions", *conditions,
               "--base_dir", str(folder), "--checkpoint_steps", "final", "--output", str(folder / output),
               "--batch_size", str(e.batch_size), "--subset_seed", str(e.subset_seed)]
    if not diagnostics:
        command += ["--backend", e.backend, "--max_new_tokens", str(e.max_new_tokens)]
    if e.test_items is not None:
        command += ["--n_samples", str(e.test_items)]
    return command + [f"model.name={spec.model}", f"training.seed={seed}", *e.overrides]


def _run(command: list[str], env: dict, what: str, log_path: Path) -> dict:
    """Run one launch with its output in `log_path`; its wall seconds and the CPU seconds (user + system) of its
    processes. On a shared machine the wall time depends on the load; the CPU time much less so."""
    logger.info("%s (log: %s)", what, log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise LaunchError(f"{what} failed (exit {code}); the end of {log_path}:\n{tail}")
    logger.info("%s: done in %.0f s", what, time.time() - started)
    return {"what": what, "wall_s": round(time.time() - started, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


class LaunchError(RuntimeError):
    """A training or evaluation launch failed; the message holds the end of its log."""


def _run_all(jobs: list[tuple[list[str], str, Path]], env: dict, workers: int) -> list[dict]:
    """Run launches `workers` at a time (each single-threaded when threads = 1: the order they finish in
    cannot change any result); the first failure stops the rest from starting."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run, command, env, what, log) for command, what, log in jobs]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
    return [f.result() for f in futures if not f.cancelled()]


def read_eval(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect_results(spec: StudySpec, task: str, out_dir: Path) -> dict[str, dict[int, dict[int, bool]]]:
    """condition -> seed -> {test index: correct} from every seed's predictions file."""
    labels = eval_labels(spec)
    results: dict[str, dict[int, dict[int, bool]]] = {c: {} for c in spec.conditions}
    for seed in spec.seeds:
        predictions = read_predictions(predictions_path(seed_dir(out_dir, task, seed) / EVAL_OUTPUT))
        for condition, label in labels.items():
            results[condition][seed] = predictions[(condition, label)]
    return results


def collect_diagnostics(spec: StudySpec, task: str, out_dir: Path) -> dict[str, dict[int, dict]]:
    """condition -> seed -> its held-out metrics, from every seed's diagnostics.json."""
    labels = eval_labels(spec)
    metrics: dict[str, dict[int, dict]] = {c: {} for c in spec.conditions}
    for seed in spec.seeds:
        found = read_eval(seed_dir(out_dir, task, seed) / DIAGNOSTICS_OUTPUT) or {"conditions": {}}
        for condition, label in labels.items():
            if label in found["conditions"].get(condition, {}):
                metrics[condition][seed] = found["conditions"][condition][label]
    return metrics


def summarise(spec: StudySpec, task: str, out_dir: Path) -> dict:
    """One task's summary (fewshot_distill.results.study), with its held-out proxies when the study scores them."""
    summary = summarise_task(collect_results(spec, task, out_dir), [tuple(p) for p in spec.pairs], spec.seeds,
                             n_resamples=spec.bootstrap_resamples, bootstrap_seed=spec.bootstrap_seed)
    if spec.eval.diagnostics:
        summary["diagnostics"] = summarise_diagnostics(collect_diagnostics(spec, task, out_dir), spec.seeds)
    return summary


def evaluation_jobs(spec: StudySpec, out_dir: Path) -> list[tuple[list[str], str, Path]]:
    """Every seed's evaluation (and diagnostics) that does not list each wanted entry yet."""
    wanted = eval_labels(spec)
    kinds = [(False, EVAL_OUTPUT, "evaluate"), *([(True, DIAGNOSTICS_OUTPUT, "diagnostics")]
                                                 if spec.eval.diagnostics else [])]
    jobs = []
    for diagnostics, output, verb in kinds:
        for task in spec.tasks:
            for seed in spec.seeds:
                folder = seed_dir(out_dir, task, seed)
                if not missing_evaluations(read_eval(folder / output), wanted):
                    logger.info("%s %s/seed %s: finished earlier, skipped", verb, task, seed)
                    continue
                jobs.append((eval_command(spec, task, seed, out_dir, list(spec.conditions), diagnostics),
                             f"{verb} {task}/seed {seed}", folder / f"{Path(output).stem}.log"))
    return jobs


def run_study(spec: StudySpec, out_dir: str | Path, title: str = "") -> dict:
    """Train, evaluate and aggregate every unfinished part of the study; returns the study JSON."""
    started = time.time()
    out_dir = Path(out_dir)
    env = launch_env(spec)
    runs = expand_runs(spec, out_dir)  # checks every condition's config before anything trains
    train_jobs = []
    for number, run in enumerate(runs, start=1):
        state = run_state(run.run_dir)
        what = f"[{number}/{len(runs)}] train {run.task}/{run.condition}/seed {run.seed}"
        if state == "done":
            logger.info("%s: finished earlier, skipped", what)
            continue
        train_jobs.append((train_command(spec, run, state), f"{what} ({state})",
                           run.run_dir.parent / f"{run.condition}.log"))
    launches = _run_all(train_jobs, env, spec.jobs)
    launches += _run_all(evaluation_jobs(spec, out_dir), env, spec.jobs)
    summaries = {task: summarise(spec, task, out_dir) for task in spec.tasks}
    study = {"study": spec.name, "model": spec.model, "tasks": summaries,
             "settings": {"conditions": {c: {"config": e.config, "overrides": e.overrides}
                                         for c, e in spec.conditions.items()},
                          "task_configs": spec.tasks, "train_overrides": spec.train_overrides,
                          "eval": {"test_items": spec.eval.test_items, "subset_seed": spec.eval.subset_seed,
                                   "max_new_tokens": spec.eval.max_new_tokens, "backend": spec.eval.backend,
                                   "diagnostics": spec.eval.diagnostics},
                          "threads": spec.threads, "jobs": spec.jobs},
             "run_info": collect_run_info()}
    write_outputs(study, out_dir, title)
    record_launches(out_dir / "times.json", launches, time.time() - started)
    return study


def record_launches(path: Path, launches: list[dict], wall_s: float) -> None:
    """Append this invocation to times.json: its wall time (`wall_s`, launches in parallel counted once), its
    launches (wall and CPU seconds each; `launch_wall_s` sums them), CPU seconds and the load average."""
    previous = json.loads(path.read_text()) if path.is_file() else {"invocations": []}
    previous["invocations"].append({"launches": launches, "load_average": list(os.getloadavg()),
                                    "wall_s": round(wall_s, 1),
                                    "launch_wall_s": round(sum(x["wall_s"] for x in launches), 1),
                                    "cpu_s": round(sum(x["cpu_s"] for x in launches), 1)})
    atomic_write_json(path, previous)


def write_outputs(study: dict, out_dir: Path, title: str = "") -> None:
    """study.json, study.md and study.png in out_dir (the same three whatever ran before)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "study.json", study)
    atomic_write_text(out_dir / "study.md", study_markdown(study["tasks"]))
    save_figure(study_figure(study["tasks"], title), out_dir / "study.png")
