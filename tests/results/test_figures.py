"""Tests for fewshot_distill/results/figures.py and the figure scripts (gen_main_fig.py, plot_curves.py) on synthetic inputs."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from fewshot_distill.results.figures import accuracy_figure, curves_figure  # noqa: E402
from fewshot_distill.results.metrics import load_run_scalars  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402
from tests.helpers import (  # noqa: E402
    DIST_CORRECT,
    SFT_CORRECT,
    entry,
    synthetic_results,
    write_json,
    write_metrics_run,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_sane_png(path: Path, min_size=(600, 400), max_size=(4000, 4000)) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"
    with Image.open(path) as image:
        width, height = image.size
    assert min_size[0] <= width <= max_size[0] and min_size[1] <= height <= max_size[1], (width, height)
    return width, height


def run_as_script(monkeypatch, script: str, *args: str) -> int | str | None:
    """`python scripts/<script> args` in this process (its `__main__` block, no new interpreter): the exit code."""
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "scripts" / script), *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO_ROOT / "scripts" / script), run_name="__main__")
    return exit_.value.code


# --- gen_main_fig.py ----------------------------------------------------------------------------------------------

def test_gen_main_fig_from_results(tmp_path):
    from scripts.gen_main_fig import main

    results = write_json(tmp_path / "r.json", synthetic_results())
    out = tmp_path / "figs" / "main.png"
    assert main(["--results", str(results), "--out", str(out)]) == 0
    width, height = assert_sane_png(out)
    assert 1.3 < width / height < 1.9  # ~8x5 in


def test_gen_main_fig_published(tmp_path):
    from scripts.gen_main_fig import main

    out = tmp_path / "published.png"
    assert main(["--published", "--out", str(out)]) == 0
    assert_sane_png(out)


def test_gen_main_fig_merges_several_files_cli(tmp_path, monkeypatch):
    full = synthetic_results()["conditions"]
    a = write_json(tmp_path / "a.json", {"conditions": {"baseline": full["baseline"], "icl_8shot": full["icl_8shot"]}})
    b = write_json(tmp_path / "b.json", {"conditions": {"online_v1": full["online_v1"]}})
    out = tmp_path / "main.png"
    assert run_as_script(monkeypatch, "gen_main_fig.py", "--results", str(a), str(b), "--out", str(out)) == 0
    assert_sane_png(out)


def test_accuracy_figure_plots_json_numbers():
    conditions = synthetic_results()["conditions"]
    fig = accuracy_figure(conditions, title="t")
    ax = fig.axes[0]
    curves = {line.get_label(): line for line in ax.get_lines()}
    sft = curves["LoRA SFT"]
    assert list(sft.get_xdata()) == sorted(SFT_CORRECT)
    assert list(sft.get_ydata()) == pytest.approx([SFT_CORRECT[s] / 2 for s in sorted(SFT_CORRECT)])
    icl = curves["Base model (8-shot ICL): 47.50%"]
    assert list(icl.get_ydata()) == pytest.approx([47.5, 47.5])
    annotations = sorted(t.get_text() for t in ax.texts)
    assert annotations == ["63.50%", "72.50%"]  # best point of each curve
    plt.close(fig)


def test_accuracy_figure_single_step():
    conditions = {"baseline": {"step_1000": entry(120)}, "online_v1": {"step_1000": entry(140)},
                  "base_0shot": {"base": entry(50)}}
    fig = accuracy_figure(conditions, title="t")
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert low <= 1000 <= high and high - low > 100
    plt.close(fig)


@pytest.mark.parametrize("content, message", [
    (None, "results file not found"),
    ("{bad", "not valid JSON"),
    ('{"model": "x"}', "no 'conditions' key"),
    ('{"conditions": {"baseline": {"step_1": {"accuracy": 0.9, "correct": 1, "total": 10}}}}', "inconsistent"),
])
def test_gen_main_fig_bad_inputs(tmp_path, content, message):
    from scripts.gen_main_fig import main

    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "x.png"
    with pytest.raises(SystemExit) as exc:
        main(["--results", str(path), "--out", str(out)])
    assert exc.value.code != 0 and message in str(exc.value.code)
    assert not out.exists()


def test_gen_main_fig_cli_exit_code(tmp_path, monkeypatch):
    code = run_as_script(monkeypatch, "gen_main_fig.py", "--results", str(tmp_path / "missing.json"),
                         "--out", str(tmp_path / "x.png"))
    assert code not in (0, None) and "results file not found" in str(code)


def test_committed_main_comparison_png():
    assert_sane_png(REPO_ROOT / "assets" / "main_comparison.png")


# --- plot_curves.py -----------------------------------------------------------------------------------------------

def test_plot_curves_two_runs_with_table(tmp_path):
    from scripts.plot_curves import main

    sft = write_metrics_run(tmp_path / "sft", steps=30, condition="baseline")
    dist = write_metrics_run(tmp_path / "dist", steps=30, distillation=True, condition="online_v1")
    results = write_json(tmp_path / "r.json", synthetic_results())
    out = tmp_path / "curves.png"
    assert main(["--runs", str(sft), str(dist), "--results", str(results), "--smooth", "0.9",
                 "--out", str(out)]) == 0
    assert_sane_png(out)


def test_curves_figure_panels_and_labels(tmp_path):
    sft = write_metrics_run(tmp_path / "baseline", steps=10)
    dist = write_metrics_run(tmp_path / "online_v1", steps=10, distillation=True)
    runs = [("LoRA SFT", load_run_scalars(sft)), ("LoRA SFT + Few-Shot Distillation", load_run_scalars(dist))]
    fig = curves_figure(runs, conditions=synthetic_results()["conditions"])
    ce_ax, dist_ax, table_ax = fig.axes
    assert [line.get_label() for line in ce_ax.get_lines()] == [label for label, _ in runs]
    assert [line.get_label() for line in dist_ax.get_lines()] == ["LoRA SFT + Few-Shot Distillation"]
    cells = {cell.get_text().get_text() for cell in table_ax.tables[0].get_celld().values()}
    expected_delta = f"{(DIST_CORRECT[800] - SFT_CORRECT[800]) / 2:+.2f}"
    assert {"800", "63.50", "71.00", expected_delta} <= cells
    plt.close(fig)


def test_plot_curves_single_sft_run_from_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from scripts.plot_curves import main

    run = tmp_path / "baseline"
    writer = SummaryWriter(log_dir=str(run / "tb"))
    for step in range(1, 11):
        writer.add_scalar("train/ce_loss", 1.0 / step, step)
    writer.close()
    out = tmp_path / "curves.png"
    assert main(["--runs", str(run), "--labels", "SFT", "--out", str(out)]) == 0
    assert_sane_png(out, min_size=(500, 300))


@pytest.mark.parametrize("extra, message", [
    (["--labels", "only-one", "--smooth", "0"], "--labels"),
    (["--smooth", "1.5"], "--smooth"),
])
def test_plot_curves_bad_arguments(tmp_path, extra, message):
    from scripts.plot_curves import main

    runs = [str(write_metrics_run(tmp_path / "a")), str(write_metrics_run(tmp_path / "b"))]
    with pytest.raises(SystemExit) as exc:
        main(["--runs", *runs, "--out", str(tmp_path / "x.png"), *extra])
    assert exc.value.code != 0 and message in str(exc.value.code)


def test_plot_curves_run_dir_without_metrics_cli(tmp_path, monkeypatch):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    code = run_as_script(monkeypatch, "plot_curves.py", "--runs", str(empty), "--out", str(tmp_path / "x.png"))
    assert code not in (0, None) and "no training metrics" in str(code)
    assert not (tmp_path / "x.png").exists()


def test_plot_curves_bad_results_file(tmp_path):
    from scripts.plot_curves import main

    run = write_metrics_run(tmp_path / "a")
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"conditions": {}}))
    with pytest.raises(SystemExit) as exc:
        main(["--runs", str(run), "--results", str(bad), "--out", str(tmp_path / "x.png")])
    assert "non-empty" in str(exc.value.code)


def test_curves_figure_table_without_trained_checkpoints(tmp_path):
    runs = [("SFT", load_run_scalars(write_metrics_run(tmp_path / "a", steps=5)))]
    conditions = {"base_0shot": {"base": entry(50)}, "icl_8shot": {"base": entry(90)}}
    fig = curves_figure(runs, conditions=conditions)
    assert len(fig.axes) == 2  # CE panel + table panel; no distillation panel without dist_loss
    cells = {cell.get_text().get_text() for cell in fig.axes[1].tables[0].get_celld().values()}
    assert {"25.00", "45.00"} <= cells
    plt.close(fig)


# --- the published data and the ablation figures ------------------------------------------------------------------

PUBLISHED = REPO_ROOT / "assets" / "published_results.json"
CONTROLS = REPO_ROOT / "assets" / "published_controls.json"


def capture_figures(monkeypatch, module, name: str) -> list:
    """Keep the figures `module`'s `name` function returns, to inspect what a script drew through it."""
    figures = []
    original = getattr(module, name)

    def keep(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(module, name, keep)
    return figures


def published_percents(path: Path, condition: str) -> list[float]:
    checkpoints = json.loads(path.read_text())["conditions"][condition]
    return [checkpoints[f"step_{s}"]["accuracy"] * 100 for s in (200, 400, 600, 800, 1000)]


@pytest.mark.parametrize("rule, marked", [("best", {"64.29%": 400, "72.71%": 600}),
                                          ("final", {"62.17%": 1000, "71.04%": 1000})])
def test_gen_main_fig_plots_five_published_points_per_method(tmp_path, monkeypatch, capsys, rule, marked):
    from fewshot_distill.results import plots
    from scripts import gen_main_fig

    figures = capture_figures(monkeypatch, plots, "accuracy_figure")
    assert gen_main_fig.main(["--published", "--select", rule, "--out", str(tmp_path / "m.png")]) == 0
    assert f"Checkpoint selection: {rule}" in capsys.readouterr().out
    ax = figures[0].axes[0]
    curves = {line.get_label(): line for line in ax.get_lines()}
    for label, condition in (("LoRA SFT", "baseline"), ("LoRA SFT + Few-Shot Distillation", "online_v1")):
        assert list(curves[label].get_xdata()) == [200, 400, 600, 800, 1000]
        assert list(curves[label].get_ydata()) == pytest.approx(published_percents(PUBLISHED, condition))
    assert {t.get_text(): t.xy[0] for t in ax.texts if t.get_text().endswith("%")} == marked
    assert any("optimistic" in t.get_text() for t in ax.texts) == (rule == "best")


def test_plot_ablations_curves_and_bars(tmp_path, monkeypatch, capsys):
    from fewshot_distill.results import plots
    from scripts import plot_ablations

    curves = capture_figures(monkeypatch, plots, "accuracy_figure")
    bars = capture_figures(monkeypatch, plots, "selected_accuracy_bars")
    out_curves, out_bars = tmp_path / "curves.png", tmp_path / "bars.png"
    assert plot_ablations.main(["--results", str(CONTROLS), "--curves", str(out_curves), "--bars",
                                str(out_bars)]) == 0
    assert "Checkpoint selection: best" in capsys.readouterr().out
    assert_sane_png(out_curves) and assert_sane_png(out_bars)
    conditions = ["baseline", "online_zeroshot", "online_shuffled", "online_v1"]
    lines = [line for line in curves[0].axes[0].get_lines() if not line.get_label().startswith("_")]
    assert len(lines) == 4
    for line, condition in zip(lines, conditions):
        assert list(line.get_ydata()) == pytest.approx(published_percents(CONTROLS, condition))
    heights = [patch.get_height() for patch in bars[0].axes[0].patches]
    assert heights == pytest.approx([max(published_percents(CONTROLS, c)) for c in conditions])
    assert bars[0].axes[0].collections  # 95% error bars
    plt.close("all")


def test_selected_accuracy_bars_final_rule_and_labels():
    from fewshot_distill.results.figures import selected_accuracy_bars

    conditions = synthetic_results()["conditions"]
    fig = selected_accuracy_bars(conditions, title="t", rule="final", labels={"baseline": "My SFT"})
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([26.5, 47.5, 62.5, 72.5])
    assert "My SFT" in [t.get_text() for t in ax.get_xticklabels()]
    assert "62.50%\nstep 1000" in [t.get_text() for t in ax.texts]
    plt.close(fig)


def test_plot_ablations_needs_an_output(tmp_path):
    from scripts.plot_ablations import main

    with pytest.raises(SystemExit) as exc:
        main(["--results", str(CONTROLS)])
    assert "nothing to draw" in str(exc.value.code)


def test_colors_of_controls_and_any_shot_count():
    from fewshot_distill.results.figures import color_for

    assert color_for("icl_4shot", set()) == color_for("icl_8shot", set()) == "tab:green"
    fixed = {color_for(c, set()) for c in ("baseline", "online_v1", "online_zeroshot", "online_shuffled", "base_0shot")}
    assert len(fixed) == 5


@pytest.mark.parametrize("name", ["ablation_curves.png", "ablation_bars.png"])
def test_committed_ablation_pngs(name):
    assert_sane_png(REPO_ROOT / "assets" / name)
