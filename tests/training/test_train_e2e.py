"""End to end: both training scripts under real 2-process DDP (gloo on CPU) on a tiny Qwen3.

`accelerate launch --multi_gpu --num_processes 2` with ACCELERATE_USE_CPU=true forms a 2-process gloo
group (`--cpu --num_processes 2` would silently run one process), so these runs exercise gradient
all-reduce, sharded data and rank-0-only writing exactly as on GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.helpers import MAX_STEPS, launch_command, read_metrics, run_env, train

pytestmark = pytest.mark.slow

# model.finetune=full SFT run, with the held-out eval on (steps 0, 3, 6): on resume its teacher and 0-shot
# reference must still be the starting model's.
FULL_SFT = ("model.finetune=full", "eval.held_out_examples=4", "training.eval_steps=3", "eval.mse_top_k=16",
            "data.num_fewshot_examples=2")
# model.finetune=full distillation: the frozen teacher copy behind the memory teacher cache (a resumed run
# starts with an empty cache: the copy's recomputed top-K must equal the cached one), student with
# gradient checkpointing.
FULL_DISTILLATION = ("model.finetune=full", "distillation.teacher_cache=memory", "training.gradient_checkpointing=true",
                     "data.num_fewshot_examples=2", "data.max_train_examples=8", "eval.held_out_examples=0")


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The trained weights in a checkpoint folder: the LoRA adapter, or a full model's every shard."""
    from safetensors.torch import load_file

    from fewshot_distill.training.checkpoint import weight_files

    weights = {}
    for name in weight_files(folder):
        weights.update(load_file(folder / name))
    return weights


@pytest.fixture(scope="module")
def online_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("online") / "run"
    train("online_v1", out, tiny_model_dir)
    return out


@pytest.fixture(scope="module")
def baseline_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "run"
    train("baseline", out, tiny_model_dir)
    return out


@pytest.fixture(scope="module")
def baseline_full_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline_full") / "run"
    train("baseline", out, tiny_model_dir, *FULL_SFT)
    return out


@pytest.fixture(scope="module")
def online_full_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("online_full") / "run"
    train("online_v1", out, tiny_model_dir, *FULL_DISTILLATION)
    return out


# run fixture -> (method, overrides)
RUNS = {"online_run": ("online_v1", ()), "baseline_run": ("baseline", ()), "baseline_full_run": ("baseline", FULL_SFT),
        "online_full_run": ("online_v1", FULL_DISTILLATION)}


def event_scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tb"))
    accumulator.Reload()
    return {tag: [e.value for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.mark.parametrize("run_fixture", list(RUNS))
def test_ddp_run_writes_checkpoints_logs_and_metadata(run_fixture, request, tiny_model_dir):
    run_dir = request.getfixturevalue(run_fixture)
    method, overrides = RUNS[run_fixture]
    full = "model.finetune=full" in overrides
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["method"] == method
    assert info["finetune"] == ("full" if full else "lora")
    assert info["condition"] == (f"{method}_full" if full else method)
    assert info["git"]["commit"] and "torch" in info["packages"] and "peft" in info["packages"]
    assert "distillation:" in (run_dir / "run_config.yaml").read_text()
    for name in ("checkpoint-2", "checkpoint-4", "checkpoint-6", "final"):
        assert (run_dir / name / ("config.json" if full else "adapter_config.json")).is_file(), name
        assert (run_dir / name / "tokenizer_config.json").is_file(), name
        assert (run_dir / name / "run_config.yaml").is_file(), name
    assert not list(run_dir.glob("*.tmp")), "no temporary checkpoint folder may remain"

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if full:
        trained = AutoModelForCausalLM.from_pretrained(run_dir / "final")
        assert not (run_dir / "final" / "adapter_config.json").exists()
        moved = [n for (n, p), (_, q) in zip(trained.named_parameters(), base.named_parameters())
                 if not torch.equal(p, q)]
        assert len(moved) == len(list(base.named_parameters())), "full fine-tuning must move every weight"
    else:
        model = PeftModel.from_pretrained(base, run_dir / "final")
        lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
        assert lora_b and any(p.abs().max() > 0 for p in lora_b), "training must have moved lora_B from zero"

    metrics = [m for m in read_metrics(run_dir) if "train/ce_loss" in m]
    assert [m["step"] for m in metrics] == list(range(1, MAX_STEPS + 1))
    expected = {"train/ce_loss", "train/total_loss", "train/lr", "train/grad_norm", "train/tokens_per_s"}
    if method == "online_v1":
        expected.add("train/dist_loss")
    assert expected <= set(metrics[0])
    scalars = event_scalars(run_dir)
    assert expected <= set(scalars)
    assert scalars["train/ce_loss"] == pytest.approx([m["train/ce_loss"] for m in metrics])
    if method == "online_v1":
        for m in metrics:
            assert m["train/total_loss"] == pytest.approx(m["train/ce_loss"] + 0.5 * m["train/dist_loss"], rel=1e-5)
    else:
        assert all(m["train/total_loss"] == pytest.approx(m["train/ce_loss"]) for m in metrics)
    # warmup: lr rises linearly by 2e-4 / 50 per step
    assert metrics[0]["train/lr"] == pytest.approx(2e-4 / 50)


@pytest.mark.parametrize("stop_signal, run_fixture", [("SIGTERM", "online_run"), ("SIGINT", "online_run"),
                                                      ("SIGTERM", "baseline_full_run"),
                                                      ("SIGTERM", "online_full_run")])
def test_sigterm_checkpoints_and_resume_matches_uninterrupted_run(request, tiny_model_dir, tmp_path, stop_signal,
                                                                  run_fixture):
    """Stop a DDP run after its first checkpoint, resume, compare with the full run.

    SIGTERM goes to the launcher (as `scancel` or a pre-empted node sends it); SIGINT to the whole
    process group, as Ctrl-C in a terminal does. The full fine-tuning runs compare every weight; full
    SFT also its held-out eval (teacher and 0-shot reference from the starting model) at the last step;
    full distillation's teacher is the frozen copy of the starting weights, not the resumed ones.
    """
    uninterrupted = request.getfixturevalue(run_fixture)
    method, overrides = RUNS[run_fixture]
    out = tmp_path / "interrupted"
    process = subprocess.Popen(launch_command(method, out, tiny_model_dir, *overrides), cwd=REPO_ROOT, env=run_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-2").is_dir():
        assert process.poll() is None and time.monotonic() < deadline, "run ended before its first checkpoint"
        time.sleep(0.02)
    if stop_signal == "SIGINT":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "Resume with the same command plus --resume" in output
    saved = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert saved and saved[-1] < MAX_STEPS, f"the run should have stopped early, saved {saved}"
    assert not (out / "final").exists()

    from fewshot_distill.training.loop import check_output_dir

    with pytest.raises(SystemExit, match="Pass --resume"):  # a fresh run may not write into this folder
        check_output_dir(out, resume=False, overwrite=False)

    resumed = train(method, out, tiny_model_dir, *overrides, "--resume")
    assert f"resumed from {out / f'checkpoint-{saved[-1]}'}" in resumed.stderr
    # Bit-identical on CPU (same data order, RNG, optimizer and scheduler state); 1e-6 leaves room for
    # reduction-order differences on other backends.
    full, interrupted = adapter_weights(uninterrupted / "final"), adapter_weights(out / "final")
    assert full and full.keys() == interrupted.keys()
    for name in full:
        torch.testing.assert_close(interrupted[name], full[name], rtol=0, atol=1e-6)
    steps = sorted({m["step"] for m in read_metrics(out) if "train/ce_loss" in m})
    assert steps == list(range(1, MAX_STEPS + 1))
    # Same seed, same loss curve: the steps before the stop come from a fresh run, the rest from the resume
    # (a step logged twice, before the stop and again after the resume, must agree both times).
    reference = {m["step"]: m for m in read_metrics(uninterrupted) if "train/ce_loss" in m}
    for record in (m for m in read_metrics(out) if "train/ce_loss" in m):
        for key in ("train/ce_loss", "train/dist_loss", "train/total_loss"):
            if key in reference[record["step"]]:
                assert record[key] == pytest.approx(reference[record["step"]][key], rel=1e-6, abs=1e-7), key
    evals = [{k: v for k, v in m.items() if k.startswith("eval/") and not k.endswith("seconds")}
             for m in read_metrics(uninterrupted) + read_metrics(out) if m["step"] == MAX_STEPS]
    evals = [e for e in evals if e]
    if "training.eval_steps=3" in overrides:
        assert len(evals) == 2 and evals[0] == pytest.approx(evals[1], rel=1e-6, abs=1e-9)


def test_damaged_newest_checkpoint_resume_matches_uninterrupted_run(online_run, tiny_model_dir, tmp_path):
    """Bytes flipped in checkpoint-6's adapter of a finished 2-process run: --resume says which file is
    bad, goes back to checkpoint-4, and its final adapter equals the uninterrupted run's."""
    from tests.helpers import flip_bytes

    out = tmp_path / "damaged"
    shutil.copytree(online_run, out)
    shutil.rmtree(out / "final")
    flip_bytes(out / "checkpoint-6" / "adapter_model.safetensors")
    resumed = train("online_v1", out, tiny_model_dir, "--resume")
    assert "checkpoint-6 is damaged: adapter_model.safetensors: sha256 differs" in resumed.stderr
    assert f"going back to {out / 'checkpoint-4'} (step 4)" in resumed.stderr
    assert f"resumed from {out / 'checkpoint-4'} at step 4" in resumed.stderr
    full, again = adapter_weights(online_run / "final"), adapter_weights(out / "final")
    assert full.keys() == again.keys()
    for name in full:
        torch.testing.assert_close(again[name], full[name], rtol=0, atol=1e-6)
    from fewshot_distill.training.checkpoint import verify_checkpoint

    assert verify_checkpoint(out / "checkpoint-6").status == "ok"  # rewritten by the resumed run
    assert [m["step"] for m in read_metrics(out)] == list(range(1, MAX_STEPS + 1))


def test_ddp_heldout_eval_logs_eval_scalars_equal_to_one_process(tiny_model_dir, tmp_path):
    """eval/* at steps 0, 3, 6 under 2-process DDP (rows sharded, sums all-reduced); the step-0 values
    (the base model) equal a 1-process run's, so the sharding loses or double-counts no row."""
    eval_overrides = ("eval.held_out_examples=5", "training.eval_steps=3", "data.num_fewshot_examples=2",
                      "data.max_train_examples=24", "eval.mse_top_k=16")
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    train("online_v1", ddp, tiny_model_dir, *eval_overrides)
    train("online_v1", single, tiny_model_dir, *eval_overrides, "training.max_steps=1", "training.eval_steps=1",
          processes=1)
    by_step = {m["step"]: m for m in read_metrics(ddp) if "eval/nll" in m}
    assert sorted(by_step) == [0, 3, 6]
    expected = {"eval/nll", "eval/top1", "eval/kl", "eval/topk_mse", "eval/gap_closed_nll", "eval/gap_closed_kl"}
    assert expected <= set(by_step[6])
    assert by_step[0]["eval/gap_closed_nll"] == pytest.approx(0.0, abs=1e-9)
    reference = next(m for m in read_metrics(single) if m["step"] == 0)
    for key in expected:
        assert by_step[0][key] == pytest.approx(reference[key], rel=1e-5, abs=1e-9), key
    assert "eval/nll" in event_scalars(ddp)
    info = json.loads((ddp / "run_info.json").read_text())
    assert info["data"]["train_examples"] == 24  # data.max_train_examples: the subset only
