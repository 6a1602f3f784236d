"""Tasks end to end on a tiny Qwen3 (1 process, CPU): a config-only JSONL task trains and evaluates with no
new Python; a dev split (data.dev_examples) stays out of training and of every shot pool, is evaluated with
--split dev and selects the checkpoints of write_results.py --select dev; GSM8K-format checkpoints are
evaluated on SVAMP (--task svamp, shots from a GSM8K folder) and the transfer table renders from both tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot_distill.config import load_config
from fewshot_distill.data.examples import build_examples, load_task_rows
from fewshot_distill.eval.evaluate import main as evaluate
from fewshot_distill.eval.prompts import build_prompts
from fewshot_distill.eval.shot_source import load_shot_rows
from fewshot_distill.tasks import task_of
from tests.conftest import REPO_ROOT, SHARED, SMOKE_DATA

pytestmark = pytest.mark.slow

EXAMPLE_CONFIG = REPO_ROOT / "configs" / "tasks" / "jsonl_example.yaml"
N_TRAIN, N_TEST, N_DEV = 24, 6, 4
SHOTS = 2


def smoke_records(split: str, n: int) -> list[dict]:
    """The project's smoke problems with other field names: {"problem", "result" (a number)}."""
    rows = [json.loads(line) for line in (SMOKE_DATA / f"{split}.jsonl").read_text().splitlines()[:n]]
    return [{"problem": r["question"], "result": float(r["answer"].rsplit("####", 1)[1])} for r in rows]


def overrides(ws) -> list[str]:
    return [f"model.name={ws['model']}", f"data.path={ws['data']}", f"data.num_fewshot_examples={SHOTS}",
            f"data.dev_examples={N_DEV}", "data.num_workers=0", "data.max_seq_len_teacher=1024"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("tasks_e2e")
    data = root / "my_task"
    data.mkdir()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in smoke_records(split, n)))
    ws = {"root": root, "data": data, "model": tiny_model_dir, "runs": root / "experiments"}
    command = [sys.executable, "-m", "fewshot_distill.train", "--config", str(EXAMPLE_CONFIG),
               "--output_dir", str(ws["runs"] / "online_v1"), *overrides(ws), "training.max_steps=4",
               "training.save_steps=2", "training.logging_steps=1", "training.per_device_train_batch_size=2",
               "training.gradient_accumulation_steps=1", "training.warmup_steps=0", "training.bf16=false",
               "eval.held_out_examples=0"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert result.returncode == 0, result.stderr[-4000:]
    return ws


def test_config_only_task_trains_without_the_dev_rows(workspace):
    info = json.loads((workspace["runs"] / "online_v1" / "run_info.json").read_text())
    assert info["data"]["train_examples"] == N_TRAIN - N_DEV
    for name in ("checkpoint-2", "checkpoint-4"):
        assert (workspace["runs"] / "online_v1" / name / "adapter_config.json").is_file()
    run_config = (workspace["runs"] / "online_v1" / "run_config.yaml").read_text()
    assert "answer_field: result" in run_config and "dev_examples: 4" in run_config


def test_dev_rows_never_enter_training_examples_or_shots(workspace):
    from transformers import AutoTokenizer

    cfg = load_config(EXAMPLE_CONFIG, overrides(workspace))
    tokenizer = AutoTokenizer.from_pretrained(workspace["model"])
    dev_rows = load_task_rows(cfg.data, "dev")
    train_rows = load_task_rows(cfg.data, "train")
    dev_questions = {r["question"] for r in dev_rows}
    assert len(dev_rows) == N_DEV and len(train_rows) == N_TRAIN - N_DEV
    assert dev_questions.isdisjoint(r["question"] for r in train_rows)
    # training: every student and teacher (with its shots) sequence, decoded
    examples, _ = build_examples(train_rows, tokenizer, cfg.data, seed=cfg.training.seed, with_teacher=True)
    texts = [tokenizer.decode(e.teacher_input_ids) for e in examples]
    assert all(e.n_shots == SHOTS for e in examples)
    # evaluation: the few-shot row's prompts on test and on dev rows
    shot_rows, source = load_shot_rows(cfg.data)
    assert source["own_train_split"] and len(shot_rows) == N_TRAIN - N_DEV
    for rows in (load_task_rows(cfg.data, "test"), dev_rows):
        texts += build_prompts(tokenizer, rows, range(len(rows)), shot_rows, SHOTS, cfg.training.seed,
                               task=task_of(cfg.data))
    questions_of_shots = [t.count("Question:") for t in texts]
    assert min(questions_of_shots) == SHOTS + 1
    leaked = [q for q in dev_questions for t in texts[:len(examples)] if q in t]
    assert leaked == []
    # the dev prompts hold their own question once, and no other dev question among the shots
    for text in texts[len(examples):]:
        assert sum(q in text for q in dev_questions) <= 1


def eval_args(ws, output: Path, *flags: str, later_overrides: tuple[str, ...] = ()) -> list[str]:
    return ["--config", str(EXAMPLE_CONFIG), "--conditions", "base_0shot", f"icl_{SHOTS}shot", "online_v1",
            "--base_dir", str(ws["runs"]), "--output", str(output), "--backend", "hf", "--max_new_tokens", "4",
            "--batch_size", "4", *flags, *overrides(ws), *later_overrides]


def test_dev_split_evaluation_selects_checkpoints_and_transfer_table(workspace, capsys):
    from scripts import write_results

    dev_out, test_out = workspace["root"] / "dev.json", workspace["root"] / "test.json"
    assert evaluate(eval_args(workspace, dev_out, "--split", "dev")) == 0
    assert evaluate(eval_args(workspace, test_out)) == 0
    dev = json.loads(dev_out.read_text())
    assert dev["split"] == "dev" and dev["task"] == "jsonl" and dev["prompting"]["shots_from"]["own_train_split"]
    assert {e["total"] for labels in dev["conditions"].values() for e in labels.values()} == {N_DEV}
    cfg = load_config(EXAMPLE_CONFIG, overrides(workspace))
    dev_golds = sorted(task_of(cfg.data).row_gold(r) for r in load_task_rows(cfg.data, "dev"))
    rows = [json.loads(line) for line in dev_out.with_name("dev.predictions.jsonl").read_text().splitlines()]
    assert sorted(r["gold"] for r in rows if r["condition"] == "base_0shot") == dev_golds

    # a dev results file is never resumed as a test one
    assert evaluate(eval_args(workspace, dev_out)) == 2

    # GSM8K-format checkpoints on SVAMP: shots from a GSM8K folder (the smoke set), recorded
    svamp = SHARED / "data" / "svamp"
    if not svamp.is_dir():
        pytest.skip("../shared/data/svamp is absent")
    svamp_out = workspace["root"] / "svamp.json"
    assert evaluate(eval_args(workspace, svamp_out, "--task", "svamp", "--n_samples", "3", "--shot_path",
                              str(SMOKE_DATA), later_overrides=(f"data.path={svamp}",))) == 0
    svamp_results = json.loads(svamp_out.read_text())
    assert svamp_results["task"] == "svamp" and svamp_results["config"]["data"]["task"] == "svamp"
    assert svamp_results["prompting"]["shots_from"]["task"] == "gsm8k"
    assert svamp_results["prompting"]["shots_from"]["path"] == str(SMOKE_DATA)
    assert not svamp_results["prompting"]["shots_from"]["own_train_split"]
    assert set(svamp_results["conditions"]["online_v1"]) == {"step_2", "step_4"}

    out = workspace["root"] / "results.md"
    assert write_results.main(["--results", str(test_out), "--select", "dev", "--dev_results", str(dev_out),
                               "--transfer", str(test_out), str(svamp_out), "--out", str(out)]) == 0
    markdown = out.read_text()
    assert "dev: dev-selected (%)" in markdown
    assert "| Method | Checkpoint | jsonl (%) | SVAMP (%) |" in markdown
    assert f"| Base model ({SHOTS}-shot ICL) | base model |" in markdown


def test_dev_split_diagnostics_select_by_nll(workspace):
    from fewshot_distill.eval.diagnostics_run import main as diagnostics
    from fewshot_distill.results.selection import dev_choices, load_dev_results

    output = workspace["root"] / "dev_diagnostics.json"
    assert diagnostics(["--config", str(EXAMPLE_CONFIG), "--conditions", "base_0shot", f"icl_{SHOTS}shot",
                        "online_v1", "--base_dir", str(workspace["runs"]), "--split", "dev", "--batch_size", "2",
                        "--output", str(output), *overrides(workspace), "eval.mse_top_k=16"]) == 0
    data = load_dev_results(output)
    assert data["split"] == "dev" and data["prompting"]["shots_from"]["own_train_split"]
    nll = {label: m["nll"] for label, m in data["conditions"]["online_v1"].items()}
    assert {e["rows"] for labels in data["conditions"].values() for e in labels.values()} == {N_DEV}
    assert dev_choices(data) == {"online_v1": min(nll, key=nll.get)}
