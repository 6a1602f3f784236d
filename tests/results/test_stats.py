"""Tests for fewshot_distill/results/stats.py (intervals, exact McNemar, resolvable differences) and the statistics that
scripts/write_results.py and the figure scripts print from a predictions file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fewshot_distill.results.stats import (
    binomial_standard_error,
    bootstrap_interval,
    check_predictions_match,
    exact_binomial_two_sided,
    find_predictions,
    intervals_from_counts,
    mcnemar_exact,
    minimum_detectable_difference,
    minimum_resolvable_difference,
    paired_flags,
    paired_tests_from_predictions,
    read_predictions,
    same_label_pairs,
    unpaired_p_value,
    wilson_interval,
)

# --- exact binomial / McNemar -------------------------------------------------------------------------------------


def brute_force_two_sided(k: int, n: int) -> float:
    """The textbook definition: total probability of outcomes no more likely than the observed one."""
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[k] * (1 + 1e-12)))


@pytest.mark.parametrize("k, n, expected", [(0, 5, 2 / 32), (1, 6, 2 * 7 / 64), (5, 5, 2 / 32), (3, 6, 1.0),
                                            (0, 0, 1.0), (2, 10, 2 * (1 + 10 + 45) / 1024)])
def test_exact_binomial_hand_computed(k, n, expected):
    assert exact_binomial_two_sided(k, n) == pytest.approx(expected, rel=1e-12)


def test_exact_binomial_matches_definition():
    for n in range(0, 16):
        for k in range(n + 1):
            assert exact_binomial_two_sided(k, n) == pytest.approx(brute_force_two_sided(k, n), rel=1e-9), (k, n)


def test_exact_binomial_large_n_is_finite():
    p = exact_binomial_two_sided(10, 2000)  # big integers, no float overflow
    assert 0 <= p < 1e-100


def test_mcnemar_identical_predictions_give_p_one():
    flags = np.random.default_rng(0).random(200) < 0.6
    result = mcnemar_exact(flags, flags)
    assert (result.only_a, result.only_b, result.n, result.p_value) == (0, 0, 200, 1.0)
    assert result.difference == 0


def test_mcnemar_hand_computed():
    # 10 problems: both right on 2, both wrong on 1, A only on 6, B only on 1 -> binomial(1 of 7): p = 2*8/128
    a = [1, 1, 0, 1, 1, 1, 1, 1, 1, 0]
    b = [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (6, 1)
    assert result.p_value == pytest.approx(0.125)
    assert result.difference == pytest.approx(0.5)
    assert mcnemar_exact(b, a).p_value == result.p_value  # symmetric


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([True, False], [True])


# --- intervals ----------------------------------------------------------------------------------------------------

def flags_with(correct: int, total: int) -> list[bool]:
    return [True] * correct + [False] * (total - correct)


@pytest.mark.parametrize("correct, total", [(7, 10), (140, 200), (959, 1319), (1, 50)])
def test_bootstrap_contains_accuracy(correct, total):
    low, high = bootstrap_interval(flags_with(correct, total), n_resamples=2000)
    assert low <= correct / total <= high
    assert 0 <= low < high <= 1


def test_bootstrap_is_seeded():
    flags = flags_with(140, 200)
    assert bootstrap_interval(flags, n_resamples=500, seed=3) == bootstrap_interval(flags, n_resamples=500, seed=3)
    assert bootstrap_interval(flags, n_resamples=500, seed=3) != bootstrap_interval(flags, n_resamples=500, seed=4)


def test_interval_width_shrinks_with_n():
    widths = []
    for total in (100, 400, 1600):
        low, high = bootstrap_interval(flags_with(int(0.7 * total), total), n_resamples=2000)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.25)  # ~ 1/sqrt(n)
    wilson = [wilson_interval(int(0.7 * t), t) for t in (100, 400, 1600)]
    assert [h - lo for lo, h in wilson] == sorted((h - lo for lo, h in wilson), reverse=True)


def test_bootstrap_agrees_with_binomial_at_paper_scale():
    # 959 / 1319 (the paper's distillation number): the bootstrap half-width ~ 1.96 * binomial SE
    low, high = bootstrap_interval(flags_with(959, 1319))
    half = 1.96 * binomial_standard_error(959 / 1319, 1319)
    assert (high - low) / 2 == pytest.approx(half, rel=0.06)
    w_low, w_high = wilson_interval(959, 1319)
    assert low == pytest.approx(w_low, abs=0.003) and high == pytest.approx(w_high, abs=0.003)


def test_bootstrap_degenerate_and_bad_input():
    assert bootstrap_interval([True] * 20, n_resamples=100) == (1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([True], confidence=1.5)


def test_wilson_interval_properties():
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0, abs=1e-12) and 0 < high < 0.35  # never below 0, unlike p +- z*SE
    low, high = wilson_interval(50, 100)
    assert 0.5 - low == pytest.approx(high - 0.5)
    low, high = wilson_interval(959, 1319)
    assert low < 959 / 1319 < high
    with pytest.raises(ValueError, match="correct <= total"):
        wilson_interval(11, 10)


def test_resolvable_and_detectable_differences():
    se = math.sqrt(0.7 * 0.3 / 1319)
    assert binomial_standard_error(0.7, 1319) == pytest.approx(se)
    resolvable = minimum_resolvable_difference(0.7, 1319)
    assert resolvable == pytest.approx(1.959964 * math.sqrt(2) * se, rel=1e-5)
    assert minimum_detectable_difference(0.7, 1319) == pytest.approx((1.959964 + 0.841621) * math.sqrt(2) * se,
                                                                     rel=1e-5)
    # a gap just above the resolvable one is significant, just below it is not
    gap = round(resolvable * 1319)
    base = round(0.7 * 1319) - gap // 2
    assert unpaired_p_value(base, base + gap + 1, 1319) < 0.05 < unpaired_p_value(base, base + gap - 1, 1319)


def test_unpaired_p_value_on_the_papers_numbers():
    assert unpaired_p_value(959, 956, 1319) > 0.5        # 72.71 vs 72.48 (0.23 pp): far below resolution
    assert unpaired_p_value(848, 959, 1319) < 1e-5       # 64.29 vs 72.71 (8.42 pp): resolved
    assert unpaired_p_value(0, 0, 10) == 1.0


# --- predictions files --------------------------------------------------------------------------------------------

def prediction_row(condition: str, label: str, index: int, correct: bool) -> dict:
    """One line in the format fewshot_distill/eval/runner.py writes (docs/evaluation.md)."""
    return {"condition": condition, "label": label, "index": index, "generated": "... #### 5",
            "extracted": "5" if correct else "6", "gold": "5", "correct": correct}


def write_predictions(path: Path, entries: dict[tuple[str, str], list[bool]], shuffle: bool = False) -> Path:
    rows = [prediction_row(c, label, 100 + i, flag) for (c, label), flags in entries.items()
            for i, flag in enumerate(flags)]
    if shuffle:
        rows = rows[::-1]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_read_and_pair_predictions(tmp_path):
    a = [True, True, False, True, False, True]
    b = [True, False, False, False, False, True]
    path = write_predictions(tmp_path / "r.predictions.jsonl", {("baseline", "step_2"): a,
                                                                ("online_v1", "step_2"): b}, shuffle=True)
    predictions = read_predictions(path)
    assert set(predictions) == {("baseline", "step_2"), ("online_v1", "step_2")}
    flags_a, flags_b = paired_flags(predictions[("baseline", "step_2")], predictions[("online_v1", "step_2")])
    assert flags_a.tolist() == a and flags_b.tolist() == b  # aligned by index despite the reversed file


@pytest.mark.parametrize("line, message", [
    ('{"condition": "x", "label": "base", "index": 1}', "missing correct"),
    ('{"condition": "x", "label": "base", "index": "1", "correct": true}', "index' an integer"),
    ("{oops", "not valid JSON"),
])
def test_read_predictions_bad_rows(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_predictions(path)


def test_read_predictions_duplicate_index_and_missing_file(tmp_path):
    path = tmp_path / "p.jsonl"
    row = json.dumps(prediction_row("x", "base", 1, True))
    path.write_text(row + "\n" + row + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        read_predictions(path)
    with pytest.raises(FileNotFoundError, match="predictions file not found"):
        read_predictions(tmp_path / "nope.jsonl")


def test_paired_flags_refuses_different_problems():
    with pytest.raises(ValueError, match="different problems"):
        paired_flags({1: True, 2: False}, {1: True, 3: False})


def test_same_label_pairs():
    entries = [("base_0shot", "base"), ("icl_8shot", "base"), ("baseline", "step_2"), ("online_v1", "step_2"),
               ("online_v1", "step_4")]
    assert same_label_pairs(entries) == [(("base_0shot", "base"), ("icl_8shot", "base")),
                                         (("baseline", "step_2"), ("online_v1", "step_2"))]


def test_predictions_must_match_the_results():
    conditions = {"baseline": {"step_2": {"accuracy": 0.5, "correct": 1, "total": 2}}}
    check_predictions_match(conditions, {("baseline", "step_2"): {0: True, 1: False}}, "p")
    with pytest.raises(ValueError, match="different runs"):
        check_predictions_match(conditions, {("baseline", "step_2"): {0: True, 1: True}}, "p")
    with pytest.raises(ValueError, match="no predictions for baseline/step_2"):
        check_predictions_match(conditions, {}, "p")


def test_paired_tests_and_count_intervals():
    conditions = {"baseline": {"step_2": {}}, "online_v1": {"step_2": {}}}
    predictions = {("baseline", "step_2"): {i: i < 3 for i in range(10)},
                   ("online_v1", "step_2"): {i: i < 9 for i in range(10)}}
    [(a, b, result)] = paired_tests_from_predictions(conditions, predictions, ["baseline", "online_v1"])
    assert (a, b) == (("baseline", "step_2"), ("online_v1", "step_2"))
    assert (result.only_a, result.only_b, result.p_value) == (0, 6, pytest.approx(2 / 64))
    intervals = intervals_from_counts({"x": {"base": {"accuracy": 0.5, "correct": 5, "total": 10}}})
    assert intervals[("x", "base")] == wilson_interval(5, 10)


def test_find_predictions_next_to_results(tmp_path):
    results = tmp_path / "full_eval.json"
    assert find_predictions([results]) == []
    (tmp_path / "full_eval.predictions.jsonl").write_text("")
    assert find_predictions([results]) == [tmp_path / "full_eval.predictions.jsonl"]
    assert find_predictions([results], ["other.jsonl"]) == [Path("other.jsonl")]


# --- scripts ------------------------------------------------------------------------------------------------------

def results_with_predictions(tmp_path: Path) -> Path:
    """A results JSON and its predictions file in the runner's formats: 40 problems, SFT vs distillation at two
    steps, both base rows."""
    rng = np.random.default_rng(1)
    entries = {
        ("base_0shot", "base"): rng.random(40) < 0.2,
        ("icl_8shot", "base"): rng.random(40) < 0.45,
        ("baseline", "step_2"): rng.random(40) < 0.5,
        ("baseline", "step_4"): rng.random(40) < 0.55,
        ("online_v1", "step_2"): rng.random(40) < 0.8,
        ("online_v1", "step_4"): rng.random(40) < 0.85,
    }
    entries = {k: [bool(x) for x in v] for k, v in entries.items()}
    conditions: dict = {}
    for (condition, label), flags in entries.items():
        conditions.setdefault(condition, {})[label] = {"accuracy": sum(flags) / 40, "correct": sum(flags),
                                                       "total": 40}
    results = tmp_path / "eval.json"
    results.write_text(json.dumps({"model": "tiny", "conditions": conditions}))
    write_predictions(tmp_path / "eval.predictions.jsonl", entries)
    return results


def test_write_results_prints_intervals_and_paired_tests(tmp_path, capsys):
    from scripts.write_results import main

    results = results_with_predictions(tmp_path)
    assert main(["--results", str(results), "--resamples", "500"]) == 0
    captured = capsys.readouterr()
    md = captured.out
    assert "95% CI (%, bootstrap)" in md and "Paired tests (same problems)" in md
    assert "exact McNemar" in md and "| step 2 | LoRA SFT | LoRA SFT + Few-Shot Distillation |" in md
    assert "| base model | Base model (0-shot) | Base model (8-shot ICL) |" in md
    per_entry = md.split("Intervals per entry", 1)[1].split("Paired tests", 1)[0]
    assert per_entry.count("| LoRA SFT | step ") == 2 and per_entry.count("| LoRA SFT + Few-Shot Distillation |") == 2
    assert "eval.predictions.jsonl" in captured.err and "Checkpoint selection: best" in captured.err
    # without predictions: Wilson intervals from the counts, no paired tests
    (tmp_path / "eval.predictions.jsonl").unlink()
    assert main(["--results", str(results)]) == 0
    md = capsys.readouterr().out
    assert "95% CI (%, Wilson)" in md and "Paired tests" not in md


def test_write_results_refuses_predictions_of_another_run(tmp_path):
    from scripts.write_results import main

    results = results_with_predictions(tmp_path)
    other = write_predictions(tmp_path / "other.jsonl", {("base_0shot", "base"): [True] * 40})
    with pytest.raises(SystemExit) as exc:
        main(["--results", str(results), "--predictions", str(other)])
    assert "different runs" in str(exc.value.code) or "no predictions for" in str(exc.value.code)


def test_gen_main_fig_draws_bootstrap_error_bars(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from scripts import gen_main_fig

    results = results_with_predictions(tmp_path)
    captured = {}
    from fewshot_distill.results import plots

    original = plots.accuracy_figure

    def keep(*args, **kwargs):
        captured["fig"] = original(*args, **kwargs)
        captured["intervals"] = kwargs["intervals"]
        return captured["fig"]

    monkeypatch.setattr(plots, "accuracy_figure", keep)  # to inspect the figure the script draws
    assert gen_main_fig.main(["--results", str(results), "--intervals", "--out", str(tmp_path / "m.png")]) == 0
    intervals = captured["intervals"]
    assert set(intervals) == {(c, label) for c, label in [("base_0shot", "base"), ("icl_8shot", "base"),
                                                          ("baseline", "step_2"), ("baseline", "step_4"),
                                                          ("online_v1", "step_2"), ("online_v1", "step_4")]}
    ax = captured["fig"].axes[0]
    assert any(t.get_text().startswith("Marked") and "bootstrap" in t.get_text() for t in ax.texts)
    assert ax.collections  # the error bars (one LineCollection per curve)
    plt.close("all")
