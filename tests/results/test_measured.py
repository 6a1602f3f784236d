"""The README's "Measured in this repository" section is generated from the committed make mini outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def test_readme_measured_section_equals_the_generated_one(monkeypatch):
    from scripts.write_measured import END, START, measured_markdown

    monkeypatch.chdir(REPO_ROOT)  # the section names its sources by repo-relative paths, as make mini writes them
    readme = Path("README.md").read_text()
    section = readme.split(START, 1)[1].split(END, 1)[0]
    onpolicy = Path("assets/mini_onpolicy")  # make mini-onpolicy's runs, when committed
    mini_full = Path("assets/mini_full")      # make mini-full's runs, when committed
    generated = measured_markdown(Path("assets/mini"), Path("assets/published_results.json"),
                                  onpolicy if (onpolicy / "diagnostics.json").is_file() else None,
                                  mini_full if (mini_full / "diagnostics.json").is_file() else None)
    assert section == "\n" + generated, "README measured section is stale: run scripts/write_measured.py --readme README.md"


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
    from scripts.write_measured import full_finetune_markdown

    full = _fake_full_mini(tmp_path)
    text = "\n".join(full_finetune_markdown(full, REPO_ROOT / "assets" / "mini"))
    for label in ("Full SFT", "Full SFT + Few-Shot Distillation", "LoRA SFT", "Base model (0-shot)"):
        assert f"| {label} |" in text, label
    data = json.loads((full / "diagnostics.json").read_text())
    data["subset_indices"] = data["subset_indices"][1:]
    (full / "diagnostics.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="different held-out rows"):
        full_finetune_markdown(full, REPO_ROOT / "assets" / "mini")
