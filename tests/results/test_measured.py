"""docs/measured.md's "Measured in this repository" and the README's summary of it are generated from the
committed make mini outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

REGENERATE = "scripts/write_measured.py --doc docs/measured.md --readme README.md"


def _committed_runs() -> tuple[Path | None, Path | None]:
    onpolicy = Path("assets/mini_onpolicy")  # make mini-onpolicy's runs, when committed
    mini_full = Path("assets/mini_full")      # make mini-full's runs, when committed
    return (onpolicy if (onpolicy / "diagnostics.json").is_file() else None,
            mini_full if (mini_full / "diagnostics.json").is_file() else None)


def _between(path: str, start: str, end: str) -> str:
    text = Path(path).read_text()
    assert start in text and end in text, f"{path} lacks the {start} / {end} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


def test_measured_page_equals_the_generated_section(monkeypatch):
    from fewshot_distill.results.measured import END, START, measured_markdown

    monkeypatch.chdir(REPO_ROOT)  # the section names its sources by repo-relative paths, as make mini writes them
    generated = measured_markdown(Path("assets/mini"), Path("assets/published_results.json"), *_committed_runs(),
                                  doc_dir=Path("docs"))
    assert _between("docs/measured.md", START, END) == "\n" + generated, (
        f"docs/measured.md's measured section is stale: run {REGENERATE}")


def test_readme_measured_summary_equals_the_generated_one(monkeypatch):
    from fewshot_distill.results.measured import SUMMARY_END, SUMMARY_START, summary_markdown

    monkeypatch.chdir(REPO_ROOT)
    generated = summary_markdown(Path("assets/mini"), *_committed_runs(), page="docs/measured.md")
    assert _between("README.md", SUMMARY_START, SUMMARY_END) == "\n" + generated, (
        f"README's measured summary is stale: run {REGENERATE}")
    rows = [line for line in generated.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len({row.split(" | ")[0] for row in rows}), "one row per condition (its last checkpoint)"


def test_write_measured_updates_both_blocks_and_fails_on_a_stale_one(tmp_path, monkeypatch):
    """The script rewrites a stale page and README back to the committed ones."""
    from scripts.write_measured import main

    monkeypatch.chdir(REPO_ROOT)
    doc, readme = tmp_path / "docs" / "measured.md", tmp_path / "README.md"
    doc.parent.mkdir()
    doc.write_text(Path("docs/measured.md").read_text().replace("| LoRA SFT | step_9 |", "| LoRA SFT | step_8 |"))
    readme.write_text(Path("README.md").read_text().replace("| LoRA SFT | step_9 |", "| LoRA SFT | step_8 |"))
    mini = tmp_path / "mini"
    shutil.copytree("assets/mini", mini)
    onpolicy, mini_full = _committed_runs()
    argv = ["--mini", str(mini), "--doc", str(doc), "--readme", str(readme)]
    argv += ["--onpolicy", str(onpolicy) if onpolicy else "none",
             "--mini_full", str(mini_full) if mini_full else "none"]
    assert main(argv) == 0
    assert "| LoRA SFT | step_8 |" not in doc.read_text() + readme.read_text()
    with pytest.raises(SystemExit):
        main(["--mini", str(mini), "--readme", str(readme)])  # the summary links to the page: --doc is needed


def _fake_full_mini(tmp_path: Path) -> Path:
    """assets/mini's SFT and distillation runs relabelled as the full fine-tuning runs (layout of make mini-full)."""
    mini, full = REPO_ROOT / "assets" / "mini", tmp_path / "mini_full"
    full.mkdir()
    shutil.copy(mini / "pipeline_times.json", full)
    data = json.loads((mini / "diagnostics.json").read_text())
    data["conditions"] = {c: v for c, v in data["conditions"].items()
                          if c in ("base_0shot", "icl_8shot", "baseline", "online_v1")}  # keyed by run folder
    (full / "diagnostics.json").write_text(json.dumps(data))
    for run in ("baseline", "online_v1"):
        shutil.copytree(mini / run, full / run)
        info = json.loads((full / run / "run_info.json").read_text())
        (full / run / "run_info.json").write_text(json.dumps({**info, "condition": f"{run}_full"}))
    return full


def test_full_finetune_rows_stand_beside_the_lora_rows_and_must_score_the_same_rows(tmp_path):
    from fewshot_distill.results.measured import full_finetune_markdown

    full = _fake_full_mini(tmp_path)
    text = "\n".join(full_finetune_markdown(full, REPO_ROOT / "assets" / "mini"))
    for label in ("Full SFT", "Full SFT + Few-Shot Distillation", "LoRA SFT", "Base model (0-shot)"):
        assert f"| {label} |" in text, label
    data = json.loads((full / "diagnostics.json").read_text())
    data["subset_indices"] = data["subset_indices"][1:]
    (full / "diagnostics.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="different held-out rows"):
        full_finetune_markdown(full, REPO_ROOT / "assets" / "mini")


ICL_DEMO_REGENERATE = "scripts/write_measured.py --icl_demo assets/icl_demo --doc docs/measured.md --readme README.md"
README_ICL_DEMO_MAX_LINES = 30  # the README keeps one table and the key pairs; the rest is on docs/measured.md


def test_readme_icl_demo_block_equals_the_generated_one_and_stays_short(monkeypatch):
    """The README's make icl-demo block (setting, one table, figure, key pairs) is what write_measured.py writes
    from the committed assets/icl_demo/study.json, at most README_ICL_DEMO_MAX_LINES lines; its figure is
    committed beside it and it links the page with the full section."""
    from fewshot_distill.results.measured import ICL_DEMO_END, ICL_DEMO_START, icl_demo_summary_markdown

    monkeypatch.chdir(REPO_ROOT)
    generated = icl_demo_summary_markdown(Path("assets/icl_demo"), "docs/measured.md")
    block = _between("README.md", ICL_DEMO_START, ICL_DEMO_END)
    assert block == "\n" + generated, f"README's icl-demo block is stale: run {ICL_DEMO_REGENERATE}"
    assert len(generated.splitlines()) <= README_ICL_DEMO_MAX_LINES, (
        f"README's icl-demo block has {len(generated.splitlines())} lines; keep detail on docs/measured.md")
    assert "](docs/measured.md)" in generated
    assert Path("assets/icl_demo/study.png").is_file()
    readme_text = Path("README.md").read_text()
    measured = readme_text.index("### Measured here")
    assert measured < readme_text.index(ICL_DEMO_START) < readme_text.index("<!-- measured-summary:start -->"), (
        "the icl-demo block opens the README's Measured here section")


def test_measured_page_icl_demo_section_equals_the_generated_one(monkeypatch):
    """docs/measured.md holds the full make icl-demo section: both tables per task and a sentence per pair."""
    from fewshot_distill.results.measured import ICL_DEMO_DOC_END, ICL_DEMO_DOC_START, icl_demo_markdown

    monkeypatch.chdir(REPO_ROOT)
    generated = icl_demo_markdown(Path("assets/icl_demo"), Path("docs"))
    assert _between("docs/measured.md", ICL_DEMO_DOC_START, ICL_DEMO_DOC_END) == "\n" + generated, (
        f"docs/measured.md's icl-demo section is stale: run {ICL_DEMO_REGENERATE}")


def _synthetic_study(tmp_path: Path) -> None:
    from fewshot_distill.results.study import summarise_task

    flags = {s: {i: i < 3 for i in range(4)} for s in (0, 1)}
    zero = {s: {i: False for i in range(4)} for s in (0, 1)}
    summary = summarise_task({"online_v1": flags, "base_0shot": zero, "baseline": zero},
                             [("baseline", "base_0shot"), ("online_v1", "baseline"), ("baseline", "online_v1")],
                             [0, 1], n_resamples=50)
    study = {"study": "icl_demo", "model": "models/x", "tasks": {"first_letter": summary},
             "settings": {"threads": 1, "eval": {"max_new_tokens": 8},
                          "train_overrides": ["data.max_train_examples=24", "training.max_steps=2",
                                              "training.per_device_train_batch_size=4",
                                              "training.gradient_accumulation_steps=2", "training.lr=1.0e-3"]}}
    (tmp_path / "study.json").write_text(json.dumps(study))


def test_icl_demo_sections_from_a_synthetic_study(tmp_path):
    """Both follow the JSON: the page has every pair, the README block only the key ones (the first pair, and
    those whose interval excludes 0) and one row per condition."""
    from fewshot_distill.results.measured import icl_demo_markdown, icl_demo_summary_markdown

    _synthetic_study(tmp_path)
    full = icl_demo_markdown(tmp_path, tmp_path)
    assert "training.max_steps=2 " in full and 'src="study.png"' in full
    assert "| LoRA SFT + Few-Shot Distillation | 75.0 | [75.0, 75.0] | 3/4, 3/4 |" in full
    assert full.count("- `first_letter`: ") == 3
    short = icl_demo_summary_markdown(tmp_path, "docs/measured.md", tmp_path)
    assert "24 train rows per seed, 2 optimizer steps of batch 8, lr 1.0e-3" in short
    assert "| LoRA SFT + Few-Shot Distillation | 75.0 [75.0, 75.0] |" in short
    verdicts = [line.split(" points, ")[0] for line in short.splitlines() if line.startswith("- `first_letter`: ")]
    assert verdicts == [  # the first pair (interval [0, 0]), then the two whose interval excludes 0
        "- `first_letter`: LoRA SFT and Base model (0-shot) are not told apart (+0.0",
        "- `first_letter`: LoRA SFT + Few-Shot Distillation is above LoRA SFT (+75.0",
        "- `first_letter`: LoRA SFT is below LoRA SFT + Few-Shot Distillation (-75.0",
    ]
    assert "[docs/measured.md](docs/measured.md)" in short


def test_write_measured_icl_demo_rewrites_both_blocks_and_needs_both_files(tmp_path, monkeypatch):
    """--icl_demo rewrites a stale page section and README block back to the committed ones; without --doc
    (the README block links the page) it stops."""
    from scripts.write_measured import main

    monkeypatch.chdir(REPO_ROOT)
    doc, readme = tmp_path / "docs" / "measured.md", tmp_path / "README.md"
    doc.parent.mkdir()
    stale = "| Base model (8-shot ICL) | 61.0"
    doc.write_text(Path("docs/measured.md").read_text().replace("| Base model (8-shot ICL) | 60.0", stale))
    readme.write_text(Path("README.md").read_text().replace("| Base model (8-shot ICL) | 60.0", stale))
    with pytest.raises(SystemExit):
        main(["--icl_demo", "assets/icl_demo", "--readme", str(readme)])
    assert main(["--icl_demo", "assets/icl_demo", "--doc", str(doc), "--readme", str(readme)]) == 0
    for page in (doc, readme):  # links differ (relative to the temporary folders); the numbers do not
        assert stale not in page.read_text() and "| Base model (8-shot ICL) | 60.0" in page.read_text()
