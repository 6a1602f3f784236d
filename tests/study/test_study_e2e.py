"""A 2-condition x 2-seed study end to end on the tiny random model (scripts/study.py: two `accelerate launch`
trainings per seed, one evaluation and one diagnostics launch per seed, the aggregate), then the same command
again: everything is found finished and the outputs are rewritten identically."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SMOKE_DATA

STUDY = """
name: e2e
model: {model}
tasks:
  smoke: {task}
seeds: [0, 1]
threads: 1
jobs: 2
train_overrides: [training.max_steps=2, training.save_steps=100, training.eval_steps=100, training.logging_steps=1,
  training.warmup_steps=0, training.per_device_train_batch_size=2, training.gradient_accumulation_steps=1,
  training.bf16=false, data.max_train_examples=4, data.num_workers=0, eval.held_out_examples=0,
  distillation.teacher_cache=none]
eval: {{test_items: 4, max_new_tokens: 4, batch_size: 4, diagnostics: true}}
bootstrap_resamples: 200
conditions:
  base_0shot: {{}}
  baseline: {{config: configs/base.yaml}}
  onpolicy: {{config: configs/onpolicy.yaml, overrides: [generation.max_new_tokens=4]}}
pairs: [[onpolicy, baseline]]
"""


@pytest.mark.slow
def test_study_trains_evaluates_aggregates_and_resumes(tiny_model_dir, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(f"data:\n  path: {SMOKE_DATA}\n  num_fewshot_examples: 2\n")
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(model=tiny_model_dir, task=task))
    out = tmp_path / "out"
    command = [sys.executable, "scripts/study.py", "--study", str(study), "--out", str(out)]
    first = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-4000:]
    for seed in (0, 1):
        for condition in ("baseline", "onpolicy"):
            run = out / "smoke" / f"seed_{seed}" / condition
            assert (run / "final" / "adapter_model.safetensors").is_file()
            assert json.loads((run / "run_info.json").read_text())["method"] == condition
    summary = json.loads((out / "study.json").read_text())["tasks"]["smoke"]
    assert summary["seeds"] == [0, 1] and summary["n_items"] == 4
    assert list(summary["conditions"]) == ["base_0shot", "baseline", "onpolicy"]
    assert [t["seed"] for t in summary["pairs"][0]["mcnemar"]] == [0, 1]
    assert (out / "study.png").stat().st_size > 0 and "| LoRA SFT |" in (out / "study.md").read_text()
    proxies = summary["diagnostics"]
    assert list(proxies) == ["base_0shot", "baseline", "onpolicy"]
    assert proxies["base_0shot"]["gap_closed_nll"]["per_seed"] == {"0": 0.0, "1": 0.0}   # 0 by definition
    assert all(proxies[c]["nll"]["mean"] > 0 for c in proxies)
    assert "ICL gap closed (NLL)" in (out / "study.md").read_text()
    outputs = {name: (out / name).read_text() for name in ("study.md",)}
    numbers = json.dumps(summary, sort_keys=True)

    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("finished earlier, skipped") == 4 + 2 + 2   # 4 runs, 2 evaluations, 2 diagnostics
    assert json.dumps(json.loads((out / "study.json").read_text())["tasks"]["smoke"], sort_keys=True) == numbers
    assert {name: (out / name).read_text() for name in outputs} == outputs
