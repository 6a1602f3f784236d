"""A result is labelled by what its run trained (run_info.json's condition), never by its folder's name.

The case that went wrong: `make mini-full` names its full fine-tuning runs' folders `baseline` and `online_v1`,
and its figures said "LoRA SFT". Evaluation now keeps each run's recorded condition beside its results
(`run_conditions`); files written before that get it from the run folders.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fewshot_distill.eval.conditions import discover_targets  # noqa: E402
from fewshot_distill.eval.runner import ResultsStore, run_targets  # noqa: E402
from fewshot_distill.results.diagnostics import (diagnostics_markdown, gap_bars_figure,  # noqa: E402
                                                 per_checkpoint_figure)
from fewshot_distill.results.figures import accuracy_figure  # noqa: E402
from fewshot_distill.results.labels import label_for, recorded_labels  # noqa: E402
from fewshot_distill.run_identity import RUN_CONDITIONS_KEY, RUN_INFO_FILE, recorded_condition  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402
from tests.results.test_figures import run_as_script  # noqa: E402
from tests.helpers import GOLDS, INDICES, ScriptedBackend, header, prompts_for  # noqa: E402

FULL_RUNS = {"baseline": "baseline_full", "online_v1": "online_v1_full"}


def diagnostics_metrics(gap: float) -> dict:
    return {"nll": 1.0, "top1": 0.5, "kl": 0.2, "topk_mse": 3.0, "gap_closed_nll": gap, "gap_closed_kl": gap,
            "tokens": 10, "rows": 2}


def full_finetune_diagnostics() -> dict:
    return {"kind": "diagnostics", RUN_CONDITIONS_KEY: dict(FULL_RUNS), "conditions": {
        "base_0shot": {"base": diagnostics_metrics(0.0)}, "icl_8shot": {"base": diagnostics_metrics(1.0)},
        "baseline": {"step_3": diagnostics_metrics(0.4), "step_6": diagnostics_metrics(0.5)},
        "online_v1": {"step_3": diagnostics_metrics(0.6), "step_6": diagnostics_metrics(0.7)}}}


def figure_texts(fig) -> str:
    texts = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    texts += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    return "\n".join(texts).replace("\n", " ")


def test_recorded_labels_from_the_results_file_then_the_run_folders_and_the_files_own_labels_win(tmp_path):
    assert recorded_labels({"conditions": {}, RUN_CONDITIONS_KEY: {"baseline": "baseline"}}) == {}
    run = tmp_path / "online_v1"
    run.mkdir()
    (run / RUN_INFO_FILE).write_text(json.dumps({"method": "online_v1", "finetune": "full",
                                                 "condition": "online_v1_full"}))
    old_file = {"conditions": {}}  # written before evaluation recorded run conditions
    assert recorded_labels(old_file, [run]) == {"online_v1": "Full SFT + Few-Shot Distillation"}
    assert recorded_labels({**old_file, "condition_labels": {"online_v1": "mine"}}, [run]) == {"online_v1": "mine"}
    assert recorded_condition(run) == "online_v1_full" and recorded_condition(tmp_path) is None


def test_full_finetune_diagnostics_figures_and_table_say_full_not_lora():
    data = full_finetune_diagnostics()
    labels = recorded_labels(data)
    for fig in (gap_bars_figure(data["conditions"], labels=labels),
                per_checkpoint_figure(data["conditions"], labels=labels)):
        text = figure_texts(fig)
        assert "Full SFT" in text and "Full SFT + Few-Shot Distillation" in text and "LoRA" not in text
    table = diagnostics_markdown(data["conditions"], labels=labels)
    assert "| Full SFT | step_6 |" in table and "LoRA" not in table


def test_full_finetune_accuracy_figure_says_full_not_lora():
    conditions = {"base_0shot": {"base": {"accuracy": 0.1, "correct": 1, "total": 10}},
                  "baseline": {"step_3": {"accuracy": 0.3, "correct": 3, "total": 10}},
                  "online_v1": {"step_3": {"accuracy": 0.4, "correct": 4, "total": 10}}}
    labels = recorded_labels({"conditions": conditions, RUN_CONDITIONS_KEY: FULL_RUNS})
    fig = accuracy_figure(conditions, "full fine-tuning", labels=labels)
    text = figure_texts(fig)
    assert label_for("online_v1_full") in text and "LoRA" not in text


def test_evaluation_records_the_condition_each_run_recorded(tmp_path):
    run = tmp_path / "baseline"
    (run / "checkpoint-3").mkdir(parents=True)
    (run / "checkpoint-3" / "config.json").write_text("{}")  # a full-weight checkpoint
    (run / RUN_INFO_FILE).write_text(json.dumps({"method": "baseline", "finetune": "full",
                                                 "condition": "baseline_full"}))
    targets, problems = discover_targets(["baseline"], tmp_path, None, base_model="base/model", icl_shots=8)
    assert problems == [] and [t.run_condition for t in targets] == ["baseline_full"]
    store = ResultsStore(tmp_path / "eval.json", header())
    run_targets(targets, store, lambda path: ScriptedBackend(), prompts_for, GOLDS, INDICES)
    assert json.loads((tmp_path / "eval.json").read_text())[RUN_CONDITIONS_KEY] == {"baseline": "baseline_full"}
    resumed = ResultsStore(tmp_path / "eval.json", header())  # a resumed evaluation keeps them
    assert resumed.data[RUN_CONDITIONS_KEY] == {"baseline": "baseline_full"}


def test_the_committed_full_finetune_figures_are_drawn_with_full_labels(tmp_path, monkeypatch):
    """assets/mini_full's diagnostics predate `run_conditions`: its run folders give the labels."""
    assets = REPO_ROOT / "assets" / "mini_full"
    assert run_as_script(monkeypatch, "plot_diagnostics.py", "--results", str(assets / "diagnostics.json"),
                         "--out_dir", str(tmp_path), "--runs", str(assets / "baseline"),
                         str(assets / "online_v1")) in (0, None)
    table = (tmp_path / "diagnostics.md").read_text()
    assert "| Full SFT + Few-Shot Distillation |" in table and "LoRA" not in table
    assert table == (assets / "diagnostics.md").read_text()  # the committed table is this one
