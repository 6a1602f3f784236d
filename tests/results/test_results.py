"""Tests for fewshot_distill/results (labels, load, tables, metrics) and scripts/write_results.py, on hand-made inputs."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from fewshot_distill.results.labels import label_for, ordered_conditions
from fewshot_distill.results.load import (
    best_checkpoint,
    published_count,
    select_checkpoint,
    checkpoint_series,
    last_checkpoint,
    load_many,
    load_results,
    parse_step,
    validate_entry,
)
from fewshot_distill.results.metrics import (
    condition_from_config,
    ema_smooth,
    load_run_scalars,
    moving_average,
    read_metrics_jsonl,
    run_label,
    series_from_records,
)
from fewshot_distill.results.tables import (
    checkpoint_matrix_rows,
    format_delta_pp,
    format_percent,
    main_table,
    per_checkpoint_rows,
    results_markdown,
    selection_note,
)
from tests.conftest import REPO_ROOT
from tests.helpers import DIST_CORRECT, SFT_CORRECT, entry, synthetic_results, write_json, write_metrics_run

PUBLISHED = REPO_ROOT / "assets" / "published_results.json"


# --- labels -------------------------------------------------------------------------------------------------------

def test_labels_known_and_unknown():
    assert label_for("online_zeroshot") == "Distillation, 0-shot teacher (control)"
    assert label_for("online_shuffled") == "Distillation, shuffled-answer shots (control)"
    assert label_for("icl_4shot") == "Base model (4-shot ICL)"  # named by its shot count, not hard-coded 8
    assert label_for("baseline", {"baseline": "SFT (full)"}) == "SFT (full)"
    assert label_for("baseline") == "LoRA SFT"
    assert label_for("online_v1") == "LoRA SFT + Few-Shot Distillation"
    assert label_for("base_0shot") == "Base model (0-shot)"
    assert label_for("icl_8shot") == "Base model (8-shot ICL)"
    assert label_for("my_new_method") == "my_new_method"


def test_ordered_conditions_puts_known_first():
    names = ["zeta", "online_v1", "alpha", "base_0shot"]
    assert ordered_conditions(names) == ["base_0shot", "online_v1", "alpha", "zeta"]
    names = ["online_v1", "online_shuffled", "icl_16shot", "baseline", "icl_4shot", "online_zeroshot", "base_0shot"]
    assert ordered_conditions(names) == ["base_0shot", "icl_4shot", "icl_16shot", "baseline", "online_zeroshot",
                                         "online_shuffled", "online_v1"]


# --- load ---------------------------------------------------------------------------------------------------------

def test_load_valid_file(tmp_path):
    data = load_results(write_json(tmp_path / "r.json", synthetic_results()))
    assert data["conditions"]["online_v1"]["step_1000"]["correct"] == 145


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results file not found"):
        load_results(tmp_path / "nope.json")


def test_load_invalid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(path)


def test_load_missing_conditions(tmp_path):
    with pytest.raises(ValueError, match="no 'conditions' key"):
        load_results(write_json(tmp_path / "r.json", {"model": "x"}))


@pytest.mark.parametrize("conditions", [{}, {"baseline": {}}, {"baseline": []}])
def test_load_empty_conditions(tmp_path, conditions):
    with pytest.raises(ValueError, match="conditions|condition 'baseline'"):
        load_results(write_json(tmp_path / "r.json", {"conditions": conditions}))


def test_load_entry_without_fields(tmp_path):
    data = {"conditions": {"baseline": {"step_200": {"accuracy": 0.5, "total": 10}}}}
    with pytest.raises(ValueError, match=r"conditions\.baseline\.step_200: missing correct"):
        load_results(write_json(tmp_path / "r.json", data))


def test_load_inconsistent_accuracy(tmp_path):
    data = {"conditions": {"baseline": {"step_200": {"accuracy": 0.9, "correct": 5, "total": 10}}}}
    with pytest.raises(ValueError, match="inconsistent with correct/total"):
        load_results(write_json(tmp_path / "r.json", data))


def test_accuracy_as_percent_is_rejected():
    with pytest.raises(ValueError, match="not a percent"):
        validate_entry({"accuracy": 64.29, "correct": 848, "total": 1319}, "x")


def test_accuracy_rounded_to_four_decimals_is_accepted_but_not_one_that_disagrees(tmp_path):
    """848 / 1319 = 0.642911...: rounded to 4 decimals it loads with its counts; 0.6439 (off by 1e-3,
    past the 5e-4 tolerance) does not."""
    data = {"conditions": {"baseline": {"step_400": {"accuracy": 0.6429, "correct": 848, "total": 1319}}}}
    loaded = load_results(write_json(tmp_path / "rounded.json", data))
    assert loaded["conditions"]["baseline"]["step_400"]["correct"] == 848
    with pytest.raises(ValueError, match="inconsistent with correct/total"):
        validate_entry({"accuracy": 0.6439, "correct": 848, "total": 1319}, "x")


@pytest.mark.parametrize("bad", [
    {"accuracy": 0.5, "correct": 5.0, "total": 10},
    {"accuracy": 0.5, "correct": 5, "total": 0},
    {"accuracy": 1.1, "correct": 11, "total": 10},
    {"accuracy": "0.5", "correct": 5, "total": 10},
])
def test_bad_entries_rejected(bad):
    with pytest.raises(ValueError):
        validate_entry(bad, "x")


def test_load_many_merges_conditions(tmp_path):
    full = synthetic_results()["conditions"]
    a = write_json(tmp_path / "a.json", {"model": "m", "conditions": {"baseline": full["baseline"]}})
    b = write_json(tmp_path / "b.json", {"model": "m", "conditions": {"online_v1": full["online_v1"],
                                                                      "baseline": {"step_1200": entry(130)}}})
    merged = load_many([a, b])
    assert set(merged["conditions"]) == {"baseline", "online_v1"}
    assert "step_1200" in merged["conditions"]["baseline"] and "step_200" in merged["conditions"]["baseline"]
    assert merged["model"] == "m" and merged["sources"] == [str(a), str(b)]


def test_load_many_conflict_is_an_error(tmp_path):
    a = write_json(tmp_path / "a.json", {"conditions": {"baseline": {"step_200": entry(100)}}})
    b = write_json(tmp_path / "b.json", {"conditions": {"baseline": {"step_200": entry(101)}}})
    with pytest.raises(ValueError, match="differs between"):
        load_many([a, b])


def test_checkpoint_helpers():
    checkpoints = {"step_1000": entry(120), "step_200": entry(130), "step_600": entry(130)}
    assert parse_step("step_1000") == 1000 and parse_step("base") is None
    assert [s for s, _ in checkpoint_series(checkpoints)] == [200, 600, 1000]
    assert last_checkpoint(checkpoints)[0] == "step_1000"
    assert best_checkpoint(checkpoints)[0] == "step_200"  # tie goes to the earliest step
    assert last_checkpoint({"base": entry(5)})[0] == "base"


# The paper README's numbers (percent, 2 decimals): both base rows and every checkpoint of both methods.
PAPER_BASE = {"base_0shot": 26.08, "icl_8shot": 47.08}
PAPER_STEPS = (200, 400, 600, 800, 1000)
PAPER_CURVES = {"baseline": (61.79, 64.29, 63.68, 63.46, 62.17), "online_v1": (72.40, 71.49, 72.71, 71.72, 71.04)}
PAPER_DELTAS = ("+10.61", "+7.20", "+9.02", "+8.26", "+8.87")  # the README's Δ column
# The follow-up's controls (a separate SFT run) and its Gemma-3-270M negative control.
FOLLOWUP_CURVES = {"baseline": (61.71, 63.76, 63.91, 64.37, 63.00),
                   "online_zeroshot": (69.29, 66.72, 66.94, 64.97, 65.96),
                   "online_shuffled": (72.48, 72.18, 70.66, 71.65, 70.13), "online_v1": PAPER_CURVES["online_v1"]}
GEMMA = {"base_0shot": 1.59, "icl_8shot": 1.59, "baseline": 4.47, "online_v1": 2.43, "online_zeroshot": 2.05}
CONTROLS = REPO_ROOT / "assets" / "published_controls.json"
GEMMA_CONTROL = REPO_ROOT / "assets" / "published_gemma_control.json"


def percents(checkpoints: dict) -> dict:
    return {label: format_percent(e["accuracy"]) for label, e in checkpoints.items()}


def test_published_count_round_trips():
    assert published_count(64.29, 1319) == 848
    with pytest.raises(ValueError, match="no count out of 10"):
        published_count(64.29, 10)


def test_published_file_has_every_checkpoint_of_both_methods():
    data = load_results(PUBLISHED)
    conditions = data["conditions"]
    assert data["published"] is True and set(conditions) == {"base_0shot", "icl_8shot", "baseline", "online_v1"}
    for condition, pct in PAPER_BASE.items():
        assert percents(conditions[condition]) == {"base": f"{pct:.2f}"}
    for condition, curve in PAPER_CURVES.items():
        assert percents(conditions[condition]) == {f"step_{s}": f"{p:.2f}" for s, p in zip(PAPER_STEPS, curve)}
    for checkpoints in conditions.values():
        for e in checkpoints.values():
            assert e["total"] == 1319 and e["correct"] == published_count(e["accuracy"] * 100, 1319)
    # the headline numbers are the best checkpoints, not step 1000
    assert data["headline"] == {"rule": "best", "checkpoints": {"baseline": "step_400", "online_v1": "step_600"}}
    assert "step 1000" not in data["source"] or "not step 1000" in data["source"]


def test_published_controls_are_a_separate_set():
    controls = load_results(CONTROLS)
    assert "critique" in controls["source"] and "repository" in controls["source"]
    conditions = controls["conditions"]
    for condition, curve in FOLLOWUP_CURVES.items():
        assert percents(conditions[condition]) == {f"step_{s}": f"{p:.2f}" for s, p in zip(PAPER_STEPS, curve)}
    assert set(controls["condition_descriptions"]) == set(FOLLOWUP_CURVES)
    assert controls["headline"]["checkpoints"] == {"baseline": "step_800", "online_zeroshot": "step_200",
                                                   "online_shuffled": "step_200", "online_v1": "step_600"}
    # its SFT run differs from the README's, so merging the two files must fail rather than mix them
    with pytest.raises(ValueError, match="differs between"):
        load_many([PUBLISHED, CONTROLS])
    gemma = load_results(GEMMA_CONTROL)
    assert {c: format_percent(e["accuracy"]) for c, cps in gemma["conditions"].items() for e in cps.values()} == \
        {c: f"{p:.2f}" for c, p in GEMMA.items()}
    assert all(e["correct"] == published_count(e["accuracy"] * 100, 1319) and e["total"] == 1319
               for cps in gemma["conditions"].values() for e in cps.values())


def test_headline_must_match_its_rule(tmp_path):
    data = synthetic_results()
    data["headline"] = {"rule": "best", "checkpoints": {"baseline": "step_800"}}
    load_results(write_json(tmp_path / "ok.json", data))
    data["headline"]["checkpoints"]["baseline"] = "step_1000"
    with pytest.raises(ValueError, match="rule 'best' picks 'step_800'"):
        load_results(write_json(tmp_path / "bad.json", data))
    data["headline"] = {"rule": "median", "checkpoints": {}}
    with pytest.raises(ValueError, match="'headline' must be"):
        load_results(write_json(tmp_path / "bad2.json", data))


def test_select_checkpoint_rules():
    checkpoints = {"step_200": entry(130), "step_1000": entry(120)}
    assert select_checkpoint(checkpoints, "best")[0] == "step_200"
    assert select_checkpoint(checkpoints, "final")[0] == "step_1000"
    with pytest.raises(ValueError, match="unknown checkpoint selection rule"):
        select_checkpoint(checkpoints, "median")


# --- tables -------------------------------------------------------------------------------------------------------

def test_format_helpers():
    assert format_percent(0.6429) == "64.29"
    assert format_percent(848 / 1319) == "64.29"
    assert format_delta_pp(0.6429, 0.7271) == "+8.42"
    assert format_delta_pp(0.7, 0.6) == "-10.00"


def test_main_table_numbers_equal_json():
    conditions = synthetic_results()["conditions"]
    lines = main_table(conditions).splitlines()  # default rule: best
    assert len(lines) == 2 + 4
    assert "| LoRA SFT | step 800 (best of 200..1000) | 63.50 | 127 / 200 |" in lines
    assert lines[2].startswith("| Base model (0-shot) | base model | 26.50 | 53 / 200 |")
    assert lines[5].startswith("| LoRA SFT + Few-Shot Distillation | step 1000 (best of 200..1000) | 72.50 |")
    final = main_table(conditions, rule="final").splitlines()
    assert final[4].startswith("| LoRA SFT | step 1000 (final) | 62.50 | 125 / 200 |")
    with_ci = main_table(conditions, intervals={("baseline", "step_800"): (0.5663, 0.6985)})
    assert "| LoRA SFT | step 800 (best of 200..1000) | 63.50 | 127 / 200 | 56.63–69.85 |" in with_ci
    assert "| Base model (0-shot) | base model | 26.50 | 53 / 200 | — |" in with_ci


def test_main_table_rows_are_the_published_best_checkpoints():
    data = load_results(PUBLISHED)
    cells = [[cell.strip() for cell in line.strip("|").split("|")]
             for line in main_table(data["conditions"]).splitlines()[2:]]
    rows = {row[0]: row[1:4] for row in cells}
    assert rows["LoRA SFT"] == ["step 400 (best of 200..1000)", "64.29", "848 / 1319"]
    assert rows["LoRA SFT + Few-Shot Distillation"] == ["step 600 (best of 200..1000)", "72.71", "959 / 1319"]
    assert rows["Base model (0-shot)"] == ["base model", "26.08", "344 / 1319"]
    assert rows["Base model (8-shot ICL)"] == ["base model", "47.08", "621 / 1319"]
    for condition, label in data["headline"]["checkpoints"].items():  # the table agrees with the file's headline
        assert rows[label_for(condition)][0].startswith(label.replace("_", " "))


def test_published_deltas_match_the_paper():
    _, rows = per_checkpoint_rows(load_results(PUBLISHED)["conditions"])
    assert [row[0] for row in rows] == [str(s) for s in PAPER_STEPS]
    assert [row[3] for row in rows] == list(PAPER_DELTAS)  # from counts, so 72.71 - 63.68 gives +9.02 as printed


def test_selection_note_and_checkpoint_matrix():
    assert "optimistic" in selection_note("best") and "optimistic" not in selection_note("final")
    header, rows = checkpoint_matrix_rows(load_results(CONTROLS)["conditions"])
    assert header[0] == "Step" and len(header) == 5
    assert rows[0] == ["200", "61.71", "69.29", "72.48", "72.40"]


def test_per_checkpoint_rows_numbers_equal_json():
    header, rows = per_checkpoint_rows(synthetic_results()["conditions"])
    assert header[0] == "Step" and header[3] == "Δ (pp)"
    for row, step in zip(rows, sorted(SFT_CORRECT)):
        sft, dist = SFT_CORRECT[step] / 200, DIST_CORRECT[step] / 200
        assert row == [str(step), f"{sft * 100:.2f}", f"{dist * 100:.2f}", f"{(dist - sft) * 100:+.2f}"]


def test_per_checkpoint_rows_missing_step_shows_dash():
    conditions = {"baseline": {"step_200": entry(100), "step_400": entry(110)}, "online_v1": {"step_400": entry(120)}}
    _, rows = per_checkpoint_rows(conditions)
    assert rows == [["200", "50.00", "—", "—"], ["400", "55.00", "60.00", "+5.00"]]


def test_per_checkpoint_rows_without_trained_runs():
    with pytest.raises(ValueError, match="needs trained runs"):
        per_checkpoint_rows({"base_0shot": {"base": entry(5)}})


def test_results_markdown_names_sources_and_skips_missing_table():
    md = results_markdown({"conditions": {"base_0shot": {"base": entry(5)}}}, ["x.json"])
    assert "`x.json`" in md.splitlines()[0] and "per checkpoint" not in md


# --- metrics ------------------------------------------------------------------------------------------------------

def test_read_metrics_and_series(tmp_path):
    run = write_metrics_run(tmp_path / "run", steps=5, distillation=True)
    records = read_metrics_jsonl(run / "metrics.jsonl")
    assert len(records) == 5
    scalars = load_run_scalars(run)
    steps, values = scalars["train/ce_loss"]
    assert steps == [1, 2, 3, 4, 5] and values[0] == pytest.approx(2.0)
    assert scalars["train/dist_loss"][1][-1] == pytest.approx(0.1)


def test_series_from_records_keeps_last_duplicate_and_sparse_keys():
    records = [{"step": 2, "a": 1.0}, {"step": 1, "a": 3.0, "b": 7.0}, {"step": 2, "a": 5.0}]
    series = series_from_records(records)
    assert series["a"] == ([1, 2], [3.0, 5.0]) and series["b"] == ([1], [7.0])


def test_bad_metrics_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/ce_loss": 1.0}\n{oops\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        load_run_scalars(tmp_path)


def test_run_dir_without_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training metrics"):
        load_run_scalars(tmp_path)
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        load_run_scalars(tmp_path / "missing")


def test_tensorboard_fallback(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    writer = SummaryWriter(log_dir=str(run / "tb"))
    for step in range(1, 6):
        writer.add_scalar("train/ce_loss", 1.0 / step, step)
        writer.add_scalar("train/dist_loss", 0.1 * step, step)
    writer.close()
    scalars = load_run_scalars(run)
    assert scalars["train/ce_loss"][0] == [1, 2, 3, 4, 5]
    assert scalars["train/dist_loss"][1] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_ema_smooth():
    values = [1.0, 3.0, 2.0, 5.0]
    assert ema_smooth(values, 0.0) == values
    assert ema_smooth([4.0] * 5, 0.9) == pytest.approx([4.0] * 5)  # debiased: no pull towards 0
    smoothed = ema_smooth(values, 0.5)
    assert smoothed[0] == pytest.approx(1.0) and smoothed[1] == pytest.approx((0.5 * 1 + 3) / 1.5)
    with pytest.raises(ValueError):
        ema_smooth(values, 1.0)


def test_moving_average():
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    with pytest.raises(ValueError):
        moving_average([1.0], 0)


def test_run_label_from_run_info_not_guessed_from_the_config(tmp_path):
    distillation_config = ("model:\n  name: Qwen/Qwen3-1.7B\ntraining:\n  output_dir: x\n"
                           "distillation:\n  n_top_logits: 256\n  lambda_distill: 0.5\n")
    sft = write_metrics_run(tmp_path / "run_a")  # SFT launched with a distillation config: still SFT
    (sft / "run_config.yaml").write_text(distillation_config)
    (sft / "run_info.json").write_text(json.dumps({"method": "baseline"}))
    dist = write_metrics_run(tmp_path / "run_b")
    (dist / "run_config.yaml").write_text(distillation_config)
    (dist / "run_info.json").write_text(json.dumps({"method": "online_v1"}))
    assert run_label(sft) == "LoRA SFT"
    assert run_label(dist) == "LoRA SFT + Few-Shot Distillation"
    guessed = write_metrics_run(tmp_path / "run_c")  # no run_info.json: no guess from lambda/K
    (guessed / "run_config.yaml").write_text(distillation_config)
    assert run_label(guessed) == "run_c"
    assert condition_from_config({"training": {"run_name": "ablation_k64"}}) == "ablation_k64"
    assert condition_from_config({"model": {"name": "Qwen/Qwen3-1.7B"}}) is None  # model.name is not a run name


def test_run_label(tmp_path):
    assert run_label(write_metrics_run(tmp_path / "a", condition="online_v1")) == "LoRA SFT + Few-Shot Distillation"
    assert run_label(write_metrics_run(tmp_path / "baseline")) == "LoRA SFT"
    assert run_label(write_metrics_run(tmp_path / "my_run")) == "my_run"


# --- scripts/write_results.py ------------------------------------------------------------------------------------

def test_write_results_main_to_file(tmp_path):
    from scripts.write_results import main

    results = write_json(tmp_path / "r.json", synthetic_results())
    out = tmp_path / "sub" / "results.md"
    assert main(["--results", str(results), "--out", str(out)]) == 0
    md = out.read_text()
    assert str(results) in md.splitlines()[0]
    assert "| 800 | 63.50 | 71.00 | +7.50 |" in md
    assert "| LoRA SFT + Few-Shot Distillation | step 1000 (best of 200..1000) | 72.50 | 145 / 200 |" in md
    assert "Checkpoint selection: best" in md and "optimistic" in md


def test_write_results_cli_stdout_and_errors(tmp_path, capsys):
    """Without --out the markdown goes to stdout (exit 0); a missing file is a non-zero exit with its reason."""
    from scripts.write_results import main

    results = write_json(tmp_path / "r.json", synthetic_results())
    assert main(["--results", str(results)]) == 0
    assert "| 1000 | 62.50 | 72.50 | +10.00 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as missing:
        main(["--results", str(tmp_path / "nope.json")])
    assert missing.value.code not in (0, None) and "results file not found" in str(missing.value.code)


@pytest.mark.parametrize("content, message", [
    ("{bad", "not valid JSON"),
    ('{"model": "x"}', "no 'conditions' key"),
    ('{"conditions": {"baseline": {"step_1": {"accuracy": 0.5}}}}', "missing correct, total"),
])
def test_write_results_bad_inputs_exit_nonzero(tmp_path, capsys, content, message):
    from scripts.write_results import main

    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exc:
        main(["--results", str(path)])
    assert exc.value.code != 0 and message in str(exc.value.code)


def makefile_command(script: str) -> list[str]:
    """Arguments of the `make figures` line that runs `script` (so the test checks what `make figures` makes)."""
    recipe = (REPO_ROOT / "Makefile").read_text().split("\nfigures:", 1)[1].split("\n\n", 1)[0]
    for command in recipe.replace("\\\n", " ").splitlines():
        words = shlex.split(command)
        if len(words) > 1 and words[1] == script:
            return words[2:]
    raise AssertionError(f"`make figures` does not run {script}")


def test_committed_published_markdown_is_up_to_date(monkeypatch, capsys):
    from scripts.write_results import main

    monkeypatch.chdir(REPO_ROOT)
    args = makefile_command("scripts/write_results.py")
    out = args.index("--out")
    assert args[out + 1] == "assets/published_results.md"
    assert main(args[:out] + args[out + 2:]) == 0
    assert capsys.readouterr().out == (REPO_ROOT / "assets" / "published_results.md").read_text()


@pytest.mark.parametrize("page, start, end, min_rows", [
    ("README.md", "### Published", "\n### ", 10),     # the README's short published tables
    ("docs/results.md", "# Published results", None, 15),  # the whole published-results page
])
def test_readme_agrees_with_the_published_data(page, start, end, min_rows):
    """The README's published results and docs/results.md: every table row and every 2+-decimal number is in the
    generated assets/published_results.md."""
    text = (REPO_ROOT / page).read_text()
    generated = (REPO_ROOT / "assets" / "published_results.md").read_text()
    assert start in text, f"{page} lacks its {start!r} section"
    section = text.split(start, 1)[1]
    section = section.split(end, 1)[0] if end else section
    table_rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_rows) >= min_rows
    for row in table_rows:
        assert row in generated, row
    assert "not published" not in text and "only step 1000" not in text
    assert "best of 200..1000" in section and "optimistic" in section
    for number in re.findall(r"\d+\.\d{2,}", section):  # every 2+-decimal number (percent, pp, p-value)
        assert number in generated, f"{page} number {number} is not in the generated results"


def test_write_results_select_final(tmp_path, capsys):
    from scripts.write_results import main

    assert main(["--results", str(PUBLISHED), "--select", "final"]) == 0
    captured = capsys.readouterr()
    assert "| LoRA SFT | step 1000 (final) | 62.17 | 820 / 1319 |" in captured.out
    assert "Checkpoint selection: final" in captured.err
