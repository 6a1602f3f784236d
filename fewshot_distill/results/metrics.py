"""Training curves of a run directory: metrics.jsonl, or TensorBoard event files in run_dir/tb as a fallback.

metrics.jsonl has one JSON object per logged optimizer step ({"step", "train/ce_loss", "train/dist_loss" (only in
distillation runs), ...}); the TensorBoard files hold the same scalar names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from fewshot_distill.results.labels import label_for
from fewshot_distill.methods import read_run_identity

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
RUN_CONFIG_FILE = "run_config.yaml"

# Series = (steps, values), both sorted by step.
Series = tuple[list[int], list[float]]


def read_metrics_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One dict per non-empty line of a metrics.jsonl file."""
    path = Path(path)
    records = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{line_no}: not valid JSON ({err})") from err
        if not isinstance(record, dict) or "step" not in record:
            raise ValueError(f"{path}:{line_no}: each line must be a JSON object with a 'step' key")
        records.append(record)
    return records


def series_from_records(records: list[dict[str, Any]]) -> dict[str, Series]:
    """Scalar name -> (steps, values) over the records that have that scalar, sorted by step.

    A step logged twice (e.g. after resuming from a checkpoint) keeps its last value.
    """
    by_name: dict[str, dict[int, float]] = {}
    for record in records:
        step = int(record["step"])
        for name, value in record.items():
            if name == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            by_name.setdefault(name, {})[step] = float(value)
    return {name: (sorted(points), [points[s] for s in sorted(points)]) for name, points in by_name.items()}


def read_tensorboard_scalars(tb_dir: str | Path) -> dict[str, Series]:
    """Scalar tag -> (steps, values) from the event files in tb_dir."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})  # 0 = keep every point
    accumulator.Reload()
    series: dict[str, Series] = {}
    for tag in accumulator.Tags().get("scalars", []):
        points = {event.step: float(event.value) for event in accumulator.Scalars(tag)}
        steps = sorted(points)
        series[tag] = (steps, [points[s] for s in steps])
    return series


def load_run_scalars(run_dir: str | Path) -> dict[str, Series]:
    """Scalars of a run dir from metrics.jsonl, else from TensorBoard files in run_dir/tb."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():
        series = series_from_records(read_metrics_jsonl(metrics_path))
        if series:
            return series
    tb_dir = run_dir / TB_DIR
    if tb_dir.is_dir() and any(p.name.startswith("events.") for p in tb_dir.iterdir()):
        series = read_tensorboard_scalars(tb_dir)
        if series:
            return series
    raise FileNotFoundError(
        f"no training metrics in {run_dir}: expected {METRICS_FILE} or TensorBoard event files in {TB_DIR}/ "
        "(pass the output_dir of a training run)"
    )


def ema_smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard-style exponential moving average, debiased so early points are not pulled towards 0.

    weight in [0, 1): 0 returns the values unchanged, 0.9 smooths strongly.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    smoothed, running, n = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):  # keep NaN/inf visible without poisoning the rest of the curve
            smoothed.append(value)
            continue
        n += 1
        running = weight * running + (1 - weight) * value
        smoothed.append(running / (1 - weight**n))
    return smoothed


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start)."""
    if window < 1:
        raise ValueError(f"moving-average window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def condition_from_config(config: Any) -> str | None:
    """Condition name stated by a config (`condition` / `run_name`, top level or under `training`), else None.

    Never guessed from lambda or K: a run's method is read from its run_info.json (fewshot_distill/run_identity.py).
    """
    if not isinstance(config, dict):
        return None
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    for section in (config, training):
        for key in ("condition", "run_name"):
            if isinstance(section.get(key), str) and section[key]:
                return section[key]
    return None


def run_label(run_dir: str | Path) -> str:
    """Legend label of a run: the condition in its run_info.json (written by training), else the one named by its
    run_config.yaml (see condition_from_config), else the folder name; mapped through labels.label_for."""
    run_dir = Path(run_dir)
    identity = read_run_identity(run_dir)
    name = identity["condition"] if identity else None
    config_path = run_dir / RUN_CONFIG_FILE
    if name is None and config_path.is_file():
        try:
            name = condition_from_config(yaml.safe_load(config_path.read_text()))
        except yaml.YAMLError:
            name = None  # a label is cosmetic; an unreadable config should not stop the plot
    return label_for(name or run_dir.resolve().name)
