"""Tests for src/results/figures.py and the figure scripts (gen_main_fig.py, plot_curves.py) on synthetic inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from src.results.figures import accuracy_figure, curves_figure  # noqa: E402
from src.results.metrics import load_run_scalars  # noqa: E402
from tests.test_results import (  # noqa: E402
    DIST_CORRECT,
    SFT_CORRECT,
    entry,
    synthetic_results,
    write_json,
    write_metrics_run,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_sane_png(path: Path, min_size=(600, 400), max_size=(4000, 4000)) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"
    with Image.open(path) as image:
        width, height = image.size
    assert min_size[0] <= width <= max_size[0] and min_size[1] <= height <= max_size[1], (width, height)
    return width, height


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


def test_gen_main_fig_merges_several_files_cli(tmp_path):
    full = synthetic_results()["conditions"]
    a = write_json(tmp_path / "a.json", {"conditions": {"baseline": full["baseline"], "icl_8shot": full["icl_8shot"]}})
    b = write_json(tmp_path / "b.json", {"conditions": {"online_v1": full["online_v1"]}})
    out = tmp_path / "main.png"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "gen_main_fig.py"),
                           "--results", str(a), str(b), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
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


def test_gen_main_fig_cli_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "gen_main_fig.py"),
                           "--results", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.png")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "results file not found" in proc.stderr


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


def test_plot_curves_run_dir_without_metrics_cli(tmp_path):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "plot_curves.py"),
                           "--runs", str(empty), "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert proc.returncode != 0 and "no training metrics" in proc.stderr
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
