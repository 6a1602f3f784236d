"""Uncertainty of accuracy numbers: intervals for one entry and tests between two entries.

Two situations:
- With per-problem predictions (the `{stem}.predictions.jsonl` written by fewshot_distill/eval/runner.py, one row
  `{condition, label, index, correct, ...}` per test problem), an entry gets a percentile bootstrap interval
  over problems, and two conditions scored on the same problems get an exact McNemar test (paired by `index`).
- With counts only (published numbers), what can be said is binomial: the Wilson interval of one entry, the
  unpaired two-proportion test between two entries and the smallest difference such a test can resolve. A paired
  test on the same problems is usually sharper, but needs the predictions.

All accuracies are fractions in [0, 1]; differences are returned as fractions too (x100 for percentage points).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
_BOOTSTRAP_CHUNK = 1_000  # resamples drawn at once: bounds memory to chunk x n indices


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _as_bool_array(correct: Sequence[bool]) -> np.ndarray:
    array = np.asarray(correct, dtype=bool)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("need a non-empty 1-D sequence of per-problem correct flags")
    return array


# --- one entry --------------------------------------------------------------------------------------------------

def bootstrap_interval(
    correct: Sequence[bool],
    confidence: float = CONFIDENCE,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy: resample the problems (n of n, with replacement)
    `n_resamples` times and take the (1-c)/2 and (1+c)/2 quantiles of the resampled accuracies.

    correct: (n,) per-problem correct flags. Seeded, so the same input gives the same interval.
    """
    flags = _as_bool_array(correct)
    _z(confidence)  # validates confidence
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    n = flags.size
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, n_resamples)
        picks = rng.integers(0, n, size=(stop - start, n))  # (chunk, n) problem indices
        means[start:stop] = flags[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion correct/total (sensible near 0 and 1, unlike +-z*SE)."""
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0, got {correct}/{total}")
    z = _z(confidence)
    p = correct / total
    denominator = 1 + z * z / total
    center = (p + z * z / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, center - half), min(1.0, center + half)


def binomial_standard_error(accuracy: float, total: int) -> float:
    """sqrt(p (1 - p) / n): the standard error of an accuracy measured on n independent problems."""
    if total <= 0 or not 0 <= accuracy <= 1:
        raise ValueError(f"need accuracy in [0, 1] and total > 0, got {accuracy}, {total}")
    return math.sqrt(accuracy * (1 - accuracy) / total)


# --- two entries, counts only -----------------------------------------------------------------------------------

def unpaired_p_value(correct_a: int, correct_b: int, total: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test for correct_a/total vs correct_b/total, treating
    the two entries as independent samples (all that counts allow; a paired test needs the predictions)."""
    if total <= 0:
        raise ValueError(f"total must be > 0, got {total}")
    pooled = (correct_a + correct_b) / (2 * total)
    if pooled in (0.0, 1.0):
        return 1.0
    se = math.sqrt(2 * pooled * (1 - pooled) / total)
    z = abs(correct_a - correct_b) / total / se
    return min(1.0, 2 * (1 - NormalDist().cdf(z)))


def minimum_resolvable_difference(accuracy: float, total: int, confidence: float = CONFIDENCE) -> float:
    """Smallest difference between two independent accuracies near `accuracy` (n = total each) that the
    two-sided unpaired test calls significant at 1 - confidence: z * sqrt(2 p (1 - p) / n)."""
    return _z(confidence) * math.sqrt(2) * binomial_standard_error(accuracy, total)


def minimum_detectable_difference(
    accuracy: float, total: int, confidence: float = CONFIDENCE, power: float = 0.8
) -> float:
    """True difference near `accuracy` that the unpaired test detects with probability `power`:
    (z_(1+c)/2 + z_power) * sqrt(2 p (1 - p) / n)."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    z_power = NormalDist().inv_cdf(power)
    return (_z(confidence) + z_power) * math.sqrt(2) * binomial_standard_error(accuracy, total)


# --- two entries, paired predictions ----------------------------------------------------------------------------

def exact_binomial_two_sided(successes: int, trials: int) -> float:
    """Exact two-sided p-value of `successes` in `trials` fair coin flips: 2 P(X <= min(k, n - k)), capped at 1
    (the fair coin is symmetric, so doubling one tail is the exact two-sided test). 0 trials give 1."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 1.0
    tail = sum(math.comb(trials, i) for i in range(min(successes, trials - successes) + 1))
    return min(1.0, 2 * tail / 2**trials)  # exact integer arithmetic, one correctly rounded division


@dataclass(frozen=True)
class McNemarResult:
    only_a: int       # problems A got right and B wrong
    only_b: int       # problems B got right and A wrong
    n: int            # paired problems
    p_value: float    # exact two-sided McNemar (binomial test on the only_a + only_b discordant pairs)

    @property
    def difference(self) -> float:
        """Accuracy of A minus accuracy of B on the paired problems (a fraction)."""
        return (self.only_a - self.only_b) / self.n


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemarResult:
    """Exact McNemar test of two conditions scored on the same problems.

    correct_a, correct_b: (n,) correct flags, position i = the same problem in both. Only the discordant pairs
    carry information; under the null each is equally likely to favour A or B.
    """
    a, b = _as_bool_array(correct_a), _as_bool_array(correct_b)
    if a.shape != b.shape:
        raise ValueError(f"paired flags must have the same length, got {a.size} and {b.size}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return McNemarResult(only_a, only_b, a.size, exact_binomial_two_sided(only_a, only_a + only_b))


# --- predictions files ------------------------------------------------------------------------------------------

Entry = tuple[str, str]  # (condition, label)


def read_predictions(path: str | Path) -> dict[Entry, dict[int, bool]]:
    """(condition, label) -> {test index: correct} from a predictions.jsonl (one JSON object per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path} (pass the .predictions.jsonl that "
                                "eval_checkpoints.py writes next to its results)")
    entries: dict[Entry, dict[int, bool]] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{line_no}: not valid JSON ({err})") from err
        missing = [k for k in ("condition", "label", "index", "correct") if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}:{line_no}: missing {', '.join(missing)}; each prediction row needs "
                             "condition, label, index and correct")
        if not isinstance(row["correct"], bool) or isinstance(row["index"], bool) or not isinstance(row["index"], int):
            raise ValueError(f"{path}:{line_no}: 'correct' must be true/false and 'index' an integer")
        by_index = entries.setdefault((row["condition"], row["label"]), {})
        if row["index"] in by_index:
            raise ValueError(f"{path}:{line_no}: index {row['index']} appears twice for "
                             f"{row['condition']}/{row['label']}")
        by_index[row["index"]] = row["correct"]
    return entries


def paired_flags(a: dict[int, bool], b: dict[int, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Correct flags of two entries on the same problems, aligned by test index; different problem sets are an
    error (a paired test on mismatched problems would be meaningless)."""
    if set(a) != set(b):
        raise ValueError(f"the two entries were scored on different problems ({len(set(a) ^ set(b))} indices "
                         "differ); pair only entries from the same evaluation subset")
    order = sorted(a)
    return np.array([a[i] for i in order], dtype=bool), np.array([b[i] for i in order], dtype=bool)


def same_label_pairs(entries) -> list[tuple[Entry, Entry]]:
    """Every pair of different conditions that share a label (e.g. baseline/step_200 vs online_v1/step_200),
    in the given order of entries."""
    entries = list(entries)
    return [(x, y) for i, x in enumerate(entries) for y in entries[i + 1:] if x[1] == y[1] and x[0] != y[0]]


# --- results sets ------------------------------------------------------------------------------------------------

def intervals_from_counts(
    conditions: dict[str, dict[str, dict]], confidence: float = CONFIDENCE
) -> dict[Entry, tuple[float, float]]:
    """(condition, label) -> Wilson interval of every entry of a results `conditions` mapping."""
    return {(c, label): wilson_interval(e["correct"], e["total"], confidence)
            for c, checkpoints in conditions.items() for label, e in checkpoints.items()}


def check_predictions_match(conditions: dict[str, dict[str, dict]], predictions: dict[Entry, dict[int, bool]],
                            source: str) -> None:
    """Every results entry must have predictions whose count of correct rows equals its `correct`, so the
    intervals and tests describe the same numbers as the table."""
    for condition, checkpoints in conditions.items():
        for label, entry in checkpoints.items():
            flags = predictions.get((condition, label))
            if flags is None:
                raise ValueError(f"{source}: no predictions for {condition}/{label}; pass the predictions file "
                                 "written with these results")
            if (sum(flags.values()), len(flags)) != (entry["correct"], entry["total"]):
                raise ValueError(f"{source}: predictions of {condition}/{label} give {sum(flags.values())}/"
                                 f"{len(flags)} correct, the results say {entry['correct']}/{entry['total']}; "
                                 "they are from different runs")


def intervals_from_predictions(
    conditions: dict[str, dict[str, dict]],
    predictions: dict[Entry, dict[int, bool]],
    confidence: float = CONFIDENCE,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[Entry, tuple[float, float]]:
    """(condition, label) -> percentile bootstrap interval of every results entry (same seed for each)."""
    return {(c, label): bootstrap_interval(list(predictions[(c, label)].values()), confidence, n_resamples, seed)
            for c, checkpoints in conditions.items() for label in checkpoints}


def paired_tests_from_predictions(
    conditions: dict[str, dict[str, dict]], predictions: dict[Entry, dict[int, bool]], order: list[str]
) -> list[tuple[Entry, Entry, McNemarResult]]:
    """Exact McNemar test for every pair of conditions at the same label, conditions taken in `order`."""
    entries = [(c, label) for c in order for label in conditions[c]]
    return [(a, b, mcnemar_exact(*paired_flags(predictions[a], predictions[b])))
            for a, b in same_label_pairs(entries)]


def find_predictions(results_paths: list[str | Path], given: list[str | Path] | None = None) -> list[Path]:
    """Predictions files for a results set: the `given` ones, else the `{stem}.predictions.jsonl` next to every
    results file when all of them exist (fewshot_distill.eval.runner names them), else none."""
    from fewshot_distill.eval.runner import predictions_path  # the one place that names the predictions file

    if given is not None:
        return [Path(p) for p in given]
    found = [predictions_path(p) for p in results_paths]
    return found if all(p.is_file() for p in found) else []


def load_predictions_for(conditions: dict[str, dict[str, dict]], files: list[Path]) -> dict[Entry, dict[int, bool]]:
    """Read and merge predictions files and check they match the results' counts."""
    predictions: dict[Entry, dict[int, bool]] = {}
    for path in files:
        predictions.update(read_predictions(path))
    check_predictions_match(conditions, predictions, ", ".join(map(str, files)))
    return predictions


def accuracy_intervals(conditions: dict[str, dict[str, dict]], results_paths: list[str | Path],
                       given: list[str | Path] | None = None) -> tuple[dict[Entry, tuple[float, float]], str]:
    """95% intervals of every entry and where they come from: "bootstrap" over problems when the predictions
    files exist (`given`, else the one next to each results file), else "wilson" from the counts."""
    files = find_predictions(results_paths, given)
    if files:
        return intervals_from_predictions(conditions, load_predictions_for(conditions, files)), "bootstrap"
    return intervals_from_counts(conditions), "wilson"


# --- seeds: one accuracy per training seed -----------------------------------------------------------------------

def t_two_sided_cdf(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with `dof` (integer >= 1) degrees of freedom, t >= 0.

    The finite series for integer degrees of freedom (Abramowitz & Stegun 26.7.3 / 26.7.4), with
    theta = atan(t / sqrt(dof)): odd dof sum cos^2 powers beside 2 theta / pi, even dof beside sin theta.
    """
    if dof < 1 or t < 0:
        raise ValueError(f"need dof >= 1 and t >= 0, got dof={dof}, t={t}")
    theta = math.atan(t / math.sqrt(dof))
    cos2 = math.cos(theta) ** 2
    if dof % 2 == 1:
        series, term = 0.0, 1.0
        for j in range(1, (dof - 1) // 2 + 1):  # 1 + 2/3 cos^2 + (2*4)/(3*5) cos^4 + ..., (dof - 1) / 2 terms
            series += term
            term *= cos2 * (2 * j) / (2 * j + 1)
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)
    series, term = 0.0, 1.0
    for j in range(1, dof // 2 + 1):  # 1 + 1/2 cos^2 + (1*3)/(2*4) cos^4 + ..., dof / 2 terms
        series += term
        term *= cos2 * (2 * j - 1) / (2 * j)
    return math.sin(theta) * series


def t_quantile(confidence: float, dof: int) -> float:
    """The t with P(|T| <= t) = confidence for `dof` degrees of freedom (bisection on t_two_sided_cdf)."""
    _z(confidence)  # validates confidence
    low, high = 0.0, 1.0
    while t_two_sided_cdf(high, dof) < confidence:
        high *= 2
    for _ in range(200):  # far past float resolution; stops early once the bracket cannot shrink
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if t_two_sided_cdf(middle, dof) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class SeedInterval:
    mean: float
    low: float | None     # None with one seed: no spread to estimate
    high: float | None
    n_seeds: int


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> SeedInterval:
    """Mean of per-seed values with the Student t interval mean +- t_(n-1) * s / sqrt(n) (s: the sample
    standard deviation, n - 1 in the denominator). It treats the seeds as independent draws of the whole
    training run; with one seed there is no interval."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("need a non-empty 1-D sequence of per-seed values")
    mean = float(array.mean())
    if array.size == 1:
        return SeedInterval(mean, None, None, 1)
    half = t_quantile(confidence, array.size - 1) * float(array.std(ddof=1)) / math.sqrt(array.size)
    return SeedInterval(mean, mean - half, mean + half, int(array.size))


def paired_bootstrap_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    confidence: float = CONFIDENCE,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """(difference, low, high): mean accuracy of A minus B over seeds and items, with a percentile bootstrap
    interval that resamples both: each resample draws S seeds with replacement, then for each drawn seed n of
    its n items with replacement, and takes the mean of A - B over those (seed, item) pairs. A and B stay
    paired (same seed, same item) in every draw.

    correct_a, correct_b: (S, n) correct flags, row s = seed s, column i = test item i in both.
    Draws per resample, in this order (so a direct loop can recompute it): rng.integers(0, S, S), then
    rng.integers(0, n, (S, n)).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.ndim != 2 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two (seeds, items) flag arrays of the same non-empty shape, got {a.shape} and "
                         f"{b.shape}")
    _z(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    diff = a.astype(float) - b.astype(float)  # (S, n)
    n_seeds, n_items = diff.shape
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for r in range(n_resamples):
        seeds = rng.integers(0, n_seeds, size=n_seeds)                 # (S,)
        items = rng.integers(0, n_items, size=(n_seeds, n_items))      # (S, n)
        means[r] = diff[seeds[:, None], items].mean()
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(diff.mean()), float(low), float(high)
