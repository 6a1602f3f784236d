"""docs/extending.md's copy-paste recipe (train 2 steps on the tiny model, evaluate with --backend hf) runs as
written: the block between its recipe markers, with `python` this interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

START, END = "<!-- recipe:start -->", "<!-- recipe:end -->"


def recipe() -> str:
    text = (REPO_ROOT / "docs" / "extending.md").read_text()
    block = text.split(START, 1)[1].split(END, 1)[0]
    return block.split("```bash", 1)[1].split("```", 1)[0]


def test_the_extending_recipe_trains_two_steps_and_evaluates(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe()], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "online_v1"
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2
    assert json.loads((run / "run_info.json").read_text())["method"] == "online_v1"
    results = json.loads((tmp_path / "eval.json").read_text())
    assert set(results["conditions"]) == {"base_0shot", "online_v1"}
    assert results["conditions"]["online_v1"]["step_2"]["total"] == 8
