"""The study's aggregation (fewshot_distill/results/study.py) and its statistics (fewshot_distill/results/stats.py: t quantile and
interval over seeds, paired bootstrap over seeds and items, McNemar per seed) on hand-made per-item results,
checked against numbers computed by hand or by a direct recomputation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fewshot_distill.results.stats import (mcnemar_exact, paired_bootstrap_difference, t_interval, t_quantile,
                               t_two_sided_cdf)
from fewshot_distill.results.study import (DIAGNOSTIC_KEYS, common_items, key_pairs, study_markdown,
                                           summarise_diagnostics, summarise_task, task_markdown,
                                           tasks_table_markdown)


def close(a: float, b: float, ulps: int = 8) -> bool:
    return abs(a - b) <= ulps * math.ulp(max(abs(a), abs(b)))


# --- Student t ----------------------------------------------------------------------------------------------------

def test_t_quantile_matches_the_closed_forms_for_one_and_two_degrees_of_freedom():
    # dof 1 (Cauchy): P(|T| <= t) = 2 atan(t) / pi -> t = tan(pi c / 2); dof 2: t / sqrt(2 + t^2) = c.
    assert close(t_quantile(0.95, 1), math.tan(math.pi * 0.95 / 2), ulps=64)
    assert close(t_quantile(0.95, 2), 0.95 * math.sqrt(2 / (1 - 0.95**2)), ulps=8)
    assert close(t_quantile(0.90, 2), 0.90 * math.sqrt(2 / (1 - 0.90**2)), ulps=8)


def test_t_quantile_matches_printed_tables():
    # two-sided 95% critical values of Student's t (any statistics table)
    for dof, printed in [(3, 3.182446305), (4, 2.776445105), (9, 2.262157163), (30, 2.042272456)]:
        assert abs(t_quantile(0.95, dof) - printed) < 1e-9


def test_t_cdf_is_zero_at_zero_and_rises_to_one():
    assert t_two_sided_cdf(0.0, 3) == 0.0 and t_two_sided_cdf(0.0, 4) == 0.0
    assert t_two_sided_cdf(1e6, 5) > 1 - 1e-12
    with pytest.raises(ValueError):
        t_two_sided_cdf(1.0, 0)


def test_t_interval_by_hand():
    # values 0.5, 0.6, 0.7: mean 0.6, sample sd 0.1, half width t(2) * 0.1 / sqrt(3)
    interval = t_interval([0.5, 0.6, 0.7])
    half = 0.95 * math.sqrt(2 / (1 - 0.95**2)) * 0.1 / math.sqrt(3)
    assert close(interval.mean, 0.6) and interval.n_seeds == 3
    assert abs(interval.low - (0.6 - half)) < 1e-12 and abs(interval.high - (0.6 + half)) < 1e-12


def test_t_interval_of_equal_values_is_a_point_and_one_seed_has_none():
    assert t_interval([0.25, 0.25]).low == 0.25 == t_interval([0.25, 0.25]).high
    single = t_interval([0.4])
    assert single.mean == 0.4 and single.low is None and single.high is None


# --- paired bootstrap ---------------------------------------------------------------------------------------------

def direct_paired_bootstrap(a, b, n_resamples, seed, confidence=0.95):
    """The documented draws, one resample at a time, in plain Python loops."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_seeds, n_items = a.shape
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_resamples):
        seeds = rng.integers(0, n_seeds, size=n_seeds)
        items = rng.integers(0, n_items, size=(n_seeds, n_items))
        total = 0.0
        for row, s in enumerate(seeds):
            for i in items[row]:
                total += a[s, i] - b[s, i]
        means.append(total / (n_seeds * n_items))
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def test_paired_bootstrap_equals_a_direct_recomputation_with_the_same_seed():
    a = [[1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1, 1], [0, 1, 1, 1, 0, 1]]
    b = [[0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0]]
    difference, low, high = paired_bootstrap_difference(np.array(a, bool), np.array(b, bool), n_resamples=500,
                                                        seed=7)
    assert abs(difference - (12 - 5) / 18) < 1e-12  # A right on 12 of 18 (seed, item) pairs, B on 5
    assert (low, high) == direct_paired_bootstrap(a, b, 500, 7)


def test_paired_bootstrap_hand_cases():
    # A right and B wrong everywhere: every resample gives +1
    assert paired_bootstrap_difference(np.ones((2, 3), bool), np.zeros((2, 3), bool), n_resamples=50) == (1.0, 1.0,
                                                                                                           1.0)
    # one seed, two items with differences +1 and 0: resampled means 0, 0.5, 1 with probability 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% quantiles of 400 resamples are 0 and 1
    difference, low, high = paired_bootstrap_difference(np.array([[1, 1]], bool), np.array([[0, 1]], bool),
                                                        n_resamples=400)
    assert (difference, low, high) == (0.5, 0.0, 1.0)


def test_paired_bootstrap_rejects_unpaired_shapes():
    with pytest.raises(ValueError, match="same non-empty shape"):
        paired_bootstrap_difference(np.ones((2, 3), bool), np.ones((3, 2), bool))


# --- McNemar ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, only_a, only_b, p", [
    ([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0], 5, 0, 2 / 32),             # 2 * (1/2)^5
    ([1, 0, 0, 0, 0, 1], [0, 1, 1, 1, 1, 1], 1, 4, 2 * (1 + 5) / 32),    # 2 * P(X <= 1 | n = 5)
    ([1, 0, 1], [1, 0, 1], 0, 0, 1.0),                                    # no discordant item
    ([1, 1, 0, 0], [0, 0, 1, 1], 2, 2, 1.0),                              # 2 * 11/16, capped at 1
])
def test_mcnemar_exact_p_values_by_hand(a, b, only_a, only_b, p):
    result = mcnemar_exact(np.array(a, bool), np.array(b, bool))
    assert (result.only_a, result.only_b) == (only_a, only_b)
    assert close(result.p_value, p, ulps=2)


# --- summaries ----------------------------------------------------------------------------------------------------

def synthetic_results():
    """Two conditions x three seeds x four items (test indices 10..13)."""
    def flags(*rows):
        return {seed: dict(zip(range(10, 14), map(bool, row))) for seed, row in zip((0, 1, 2), rows)}
    return {
        "online_v1": flags([1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]),   # 3/4, 2/4, 4/4
        "base_0shot": flags([0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]),  # 0, 1/4, 0
    }


def test_summarise_task_per_condition_mean_and_t_interval_by_hand():
    summary = summarise_task(synthetic_results(), [("online_v1", "base_0shot")], seeds=[0, 1, 2],
                             n_resamples=200)
    entry = summary["conditions"]["online_v1"]
    half = 0.95 * math.sqrt(2 / (1 - 0.95**2)) * 0.25 / math.sqrt(3)   # per-seed 0.75, 0.5, 1.0: sd 0.25
    assert close(entry["mean"], 0.75)
    assert abs(entry["low"] - (0.75 - half)) < 1e-12 and abs(entry["high"] - (0.75 + half)) < 1e-12
    assert entry["per_seed"] == {"0": 0.75, "1": 0.5, "2": 1.0}
    assert entry["correct_per_seed"] == {"0": 3, "1": 2, "2": 4}
    assert list(summary["conditions"]) == ["base_0shot", "online_v1"]   # the registry's display order
    assert summary["n_items"] == 4 and summary["test_indices"] == [10, 11, 12, 13]


def test_summarise_task_pairs_bootstrap_and_mcnemar_per_seed():
    results = synthetic_results()
    summary = summarise_task(results, [("online_v1", "base_0shot")], seeds=[0, 1, 2], n_resamples=300,
                             bootstrap_seed=3)
    pair = summary["pairs"][0]
    a = [[results["online_v1"][s][i] for i in range(10, 14)] for s in (0, 1, 2)]
    b = [[results["base_0shot"][s][i] for i in range(10, 14)] for s in (0, 1, 2)]
    assert abs(pair["difference"] - (9 - 1) / 12) < 1e-12
    assert (pair["low"], pair["high"]) == direct_paired_bootstrap(a, b, 300, 3)
    # seed 0: only A on 3 items -> 2 / 2^3; seed 1: only A on index 10 -> 2 / 2^1, capped at 1; seed 2: 2 / 2^4
    assert [(t["only_a"], t["only_b"]) for t in pair["mcnemar"]] == [(3, 0), (1, 0), (4, 0)]
    assert [t["p_value"] for t in pair["mcnemar"]] == [0.25, 1.0, 0.125]
    assert summary["bootstrap"]["resamples"] == 300 and summary["bootstrap"]["seed"] == 3


def test_mismatched_items_or_missing_seed_are_refused():
    results = synthetic_results()
    results["base_0shot"][1] = {10: True, 11: False, 12: False, 99: False}
    with pytest.raises(ValueError, match="base_0shot/seed 1 scored other test items"):
        common_items(results, [0, 1, 2])
    with pytest.raises(ValueError, match="no results for online_v1/seed 5"):
        common_items(synthetic_results(), [0, 5])


def test_markdown_rows_and_pair_line():
    summary = summarise_task(synthetic_results(), [("online_v1", "base_0shot")], seeds=[0, 1, 2], n_resamples=100)
    table = task_markdown(summary)
    assert "| Base model (0-shot) | 8.3 | [-27.5, 44.2] | 0/4, 1/4, 0/4 |" in table
    assert "| LoRA SFT + Few-Shot Distillation − Base model (0-shot) | +66.7 |" in table
    assert "0.25 (3/0), 1.00 (1/0), 0.12 (4/0)" in table
    text = study_markdown({"first_letter": summary})
    assert text.startswith("**first_letter** (4 test items, seeds 0, 1, 2)")
    assert "100 resamples, seed 0" in text


def test_tasks_table_has_a_row_per_condition_and_a_column_per_task():
    """The README's short table: `mean [low, high]` per task; the mean alone with one seed; `–` for a condition
    a task lacks."""
    results = synthetic_results()
    pairs = [("online_v1", "base_0shot")]
    three = summarise_task(results, pairs, seeds=[0, 1, 2], n_resamples=50)
    one = summarise_task({"base_0shot": results["base_0shot"]}, [], seeds=[0], n_resamples=50)
    table = tasks_table_markdown({"first_letter": three, "uppercase": one}).splitlines()
    assert table[0] == "| condition | `first_letter` | `uppercase` |" and table[1] == "|---|---:|---:|"
    assert table[2] == "| Base model (0-shot) | 8.3 [-27.5, 44.2] | 0.0 |"
    assert table[3].startswith("| LoRA SFT + Few-Shot Distillation | 75.0 [") and table[3].endswith("] | – |")
    assert len(table) == 4


def test_key_pairs_are_the_first_and_those_whose_interval_excludes_zero():
    summary = {"pairs": [{"a": "x", "low": -0.1, "high": 0.2}, {"a": "y", "low": -0.1, "high": 0.2},
                         {"a": "z", "low": 0.1, "high": 0.2}, {"a": "w", "low": -0.3, "high": -0.1},
                         {"a": "v", "low": 0.0, "high": 0.0}]}
    assert [p["a"] for p in key_pairs(summary)] == ["x", "z", "w"]


def synthetic_diagnostics():
    """condition -> seed -> metrics; the gap ratios of base_0shot are 0 by definition, one seed's KL gap undefined."""
    return {
        "online_v1": {0: {"nll": 1.0, "kl": 0.2, "gap_closed_nll": 0.5, "gap_closed_kl": 0.6},
                      1: {"nll": 2.0, "kl": 0.4, "gap_closed_nll": 0.7, "gap_closed_kl": None},
                      2: {"nll": 3.0, "kl": 0.6, "gap_closed_nll": 0.9, "gap_closed_kl": 0.8}},
        "base_0shot": {s: {"nll": 4.0, "kl": 1.0, "gap_closed_nll": 0.0, "gap_closed_kl": 0.0} for s in (0, 1, 2)},
    }


def test_summarise_diagnostics_mean_and_t_interval_by_hand():
    summary = summarise_diagnostics(synthetic_diagnostics(), seeds=[0, 1, 2])
    assert list(summary) == ["base_0shot", "online_v1"]
    nll = summary["online_v1"]["nll"]
    half = 0.95 * math.sqrt(2 / (1 - 0.95**2)) * 1.0 / math.sqrt(3)   # per-seed 1, 2, 3: sd 1, t_2 closed form
    assert close(nll["mean"], 2.0) and abs(nll["low"] - (2 - half)) < 1e-12 and abs(nll["high"] - (2 + half)) < 1e-12
    assert nll["per_seed"] == {"0": 1.0, "1": 2.0, "2": 3.0}
    assert close(summary["online_v1"]["gap_closed_nll"]["mean"], 0.7)
    assert summary["online_v1"]["gap_closed_kl"]["mean"] is None          # undefined at seed 1: no mean
    assert summary["base_0shot"]["kl"] == {"mean": 1.0, "low": 1.0, "high": 1.0,
                                           "per_seed": {"0": 1.0, "1": 1.0, "2": 1.0}}
    with pytest.raises(ValueError, match="no diagnostics for online_v1/seed 7"):
        summarise_diagnostics(synthetic_diagnostics(), seeds=[0, 7])


def test_diagnostic_keys_are_metrics_the_diagnostics_write():
    from fewshot_distill.eval.diagnostics import METRIC_KEYS

    assert set(DIAGNOSTIC_KEYS) <= set(METRIC_KEYS)


def test_proxies_sit_beside_accuracy_in_the_task_and_readme_tables():
    summary = summarise_task(synthetic_results(), [], seeds=[0, 1, 2], n_resamples=50)
    summary["diagnostics"] = summarise_diagnostics(synthetic_diagnostics(), seeds=[0, 1, 2])
    table = task_markdown(summary)
    assert "| Base model (0-shot) | 4.000 [4.000, 4.000] | 1.000 [1.000, 1.000] | 0.000 [0.000, 0.000] |" in table
    assert "| LoRA SFT + Few-Shot Distillation | 2.000 [-0.484, 4.484] |" in table and table.endswith(" | – |")
    short = tasks_table_markdown({"first_letter": summary}).splitlines()
    assert short[0] == "| condition | `first_letter` accuracy % | `first_letter` gap closed (NLL) |"
    assert short[1] == "|---|---:|---:|"
    assert short[2] == "| Base model (0-shot) | 8.3 [-27.5, 44.2] | 0.00 |"
    assert short[3].endswith("] | 0.70 |")
    summary["diagnostics"]["base_0shot"]["gap_closed_nll"]["mean"] = -0.001
    assert tasks_table_markdown({"first_letter": summary}).splitlines()[2].endswith(" | 0.00 |")
