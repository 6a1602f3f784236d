"""Plain helpers that more than one test module calls (no fixtures: those are in conftest.py).

Training launches of the entry point, damage done to files, the scripted evaluation backend, the vLLM
backend's greedy tokens, synthetic results files, ulp comparisons, and an SDPA that returns NaN for query
rows with no visible key. A test module imports these from here, never from another test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from fewshot_distill.eval.conditions import EvalTarget
from fewshot_distill.results.metrics import read_metrics_jsonl
from tests.conftest import REPO_ROOT, SMOKE_DATA


# ----------------------------------------------------------------------------- training launches
# The entry point (`python -m fewshot_distill.train`) under `accelerate launch --multi_gpu --num_processes 2`
# (gloo on CPU) on the tiny model and the smoke data, as tests/training/test_train_e2e.py and the other
# end-to-end tests run it; the config names the method.

TRAIN_MODULE = ["-m", "fewshot_distill.train"]
CONFIGS = {"baseline": "configs/base.yaml", "online_v1": "configs/online_v1.yaml"}
MAX_STEPS = 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(method: str, output_dir: Path, model_dir: Path, *extra: str, processes: int = 2) -> list[str]:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                str(processes), "--main_process_port", str(free_port())]
    if processes == 1:
        launcher = [sys.executable]
    return launcher + [
        *TRAIN_MODULE, "--config", CONFIGS[method], "--output_dir", str(output_dir),
        f"model.name={model_dir}", f"data.path={SMOKE_DATA}", f"training.max_steps={MAX_STEPS}",
        "training.save_steps=2", "training.logging_steps=1", "training.per_device_train_batch_size=2",
        "training.gradient_accumulation_steps=2", "training.bf16=false", "data.num_workers=0", *extra]


def run_env() -> dict:
    return {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def train(method: str, output_dir: Path, model_dir: Path, *extra: str, processes: int = 2,
          expect_ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(launch_command(method, output_dir, model_dir, *extra, processes=processes),
                            cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True, timeout=600)
    if expect_ok:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def read_metrics(run_dir: Path) -> list[dict]:
    return read_metrics_jsonl(run_dir / "metrics.jsonl")


# ----------------------------------------------------------------------------- damaged files

def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BROKEN_JSONL_LINE = '{"input": "broken'


def data_copy_with_a_broken_line(source: Path, target: Path, broken: str) -> tuple[Path, int]:
    """`source`'s train.jsonl and test.jsonl copied to folder `target`, with the truncated line
    BROKEN_JSONL_LINE appended to the file `broken` ("train" or "test"): (that file, its broken line's number)."""
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (target / f"{split}.jsonl").write_text((source / f"{split}.jsonl").read_text())
    path = target / f"{broken}.jsonl"
    text = path.read_text()
    path.write_text(text + BROKEN_JSONL_LINE + "\n")
    return path, len(text.splitlines()) + 1


def flip_bytes(path: Path) -> None:
    """Invert 4 bytes in the middle: same size, different content."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 4] = bytes(b ^ 0xFF for b in data[middle: middle + 4])
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- scripted evaluation
# The evaluation loop over a stand-in backend that returns fixed texts (tests/eval/test_eval_runner.py).

INDICES = [3, 7, 11]
GOLDS = ["4", "8", "12"]
TARGETS = [
    EvalTarget("base_0shot", "base", "base-model"),
    EvalTarget("icl_8shot", "base", "base-model", n_shots=8),
    EvalTarget("baseline", "step_200", "base-model", adapter_path="runs/baseline/checkpoint-200"),
    EvalTarget("baseline", "step_400", "base-model", adapter_path="runs/baseline/checkpoint-400"),
]


def header(**changes):
    base = {"config": {}, "model": "base-model", "subset_indices": INDICES,
            "sampling": {"temperature": 0.0, "max_new_tokens": 16}, "prompting": {"icl_shots": 8},
            "data_fingerprint": "abc", "engine": {"backend": "fake", "dtype": "float32"}}
    return {**base, **changes}


class Crash(BaseException):
    """Stands for the process dying (not an error the loop should catch)."""


class ScriptedBackend:
    """Answers the first `n_correct(adapter)` examples right; can crash or fail on one adapter."""

    def __init__(self, crash_on=None, fail_on=None):
        self.calls, self.closed = [], 0
        self.crash_on, self.fail_on = crash_on, fail_on

    def generate(self, prompt_ids, adapter_path=None):
        from fewshot_distill.eval.backends import Generation

        self.calls.append((len(prompt_ids[0]), adapter_path))
        if adapter_path is not None and adapter_path == self.crash_on:
            raise Crash()
        if adapter_path is not None and adapter_path == self.fail_on:
            raise RuntimeError("adapter has unsupported target modules")
        n_correct = 1 if adapter_path is None else int(adapter_path[-3]) - 1  # step_200 -> 1, step_400 -> 3
        return [Generation((1,), f"so #### {gold if i < n_correct else -1}") for i, gold in enumerate(GOLDS)]

    def close(self):
        self.closed += 1


def prompts_for(n_shots):
    return [[0] * (10 + n_shots)] * len(INDICES)


def run_scripted_eval(tmp_path, backend, targets=TARGETS, overwrite=False, **header_changes):
    from fewshot_distill.eval.runner import ResultsStore, run_targets

    store = ResultsStore(tmp_path / "eval.json", header(**header_changes), overwrite=overwrite)
    opened = []

    def open_backend(model_path):
        opened.append(model_path)
        return backend

    failures = run_targets(targets, store, open_backend, prompts_for, GOLDS, INDICES)
    return store, failures, opened


# ----------------------------------------------------------------------------- vLLM greedy tokens
# The evaluation's vLLM backend in a new interpreter (the engine starts its own processes), for the float32
# greedy parity tests against the transformers backend (tests/eval/test_eval_e2e.py, tests/models/test_export.py).

VLLM_DRIVER = """
import json, sys
from transformers import AutoTokenizer
from fewshot_distill.eval.backends import EngineSettings, VLLMBackend

if __name__ == "__main__":
    spec = json.loads(open(sys.argv[1]).read())
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    backend = VLLMBackend(spec["model"], tokenizer, EngineSettings(**spec["settings"]))
    out = {str(a): [list(g.token_ids) for g in backend.generate(spec["prompts"], a)] for a in spec["adapters"]}
    backend.close()
    open(sys.argv[2], "w").write(json.dumps(out))
"""


def vllm_greedy_ids(model: Path, prompts: list[list[int]], adapters: list, settings: dict, work_dir: Path
                    ) -> dict[str, list[list[int]]]:
    """str(adapter) -> the vLLM backend's generated token ids per prompt (EngineSettings(**settings)), for each
    adapter folder (None: the model itself). Fails the test when the driver exits non-zero."""
    spec = work_dir / "spec.json"
    spec.write_text(json.dumps({"model": str(model), "prompts": prompts, "adapters": adapters, "settings": settings}))
    (work_dir / "driver.py").write_text(VLLM_DRIVER)
    result = subprocess.run([sys.executable, str(work_dir / "driver.py"), str(spec), str(work_dir / "out.json")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads((work_dir / "out.json").read_text())


# ----------------------------------------------------------------------------- synthetic results

def entry(correct: int, total: int = 200) -> dict:
    return {"accuracy": correct / total, "correct": correct, "total": total}


# Synthetic eval results: 5 checkpoints per trained condition, distillation ahead at each step.
SFT_CORRECT = {200: 101, 400: 113, 600: 120, 800: 127, 1000: 125}
DIST_CORRECT = {200: 117, 400: 131, 600: 137, 800: 142, 1000: 145}


def synthetic_results() -> dict:
    return {
        "config": {"seed": 0},
        "model": "Qwen/Qwen3-1.7B",
        "subset_indices": list(range(200)),
        "sampling": {"temperature": 0.0, "max_new_tokens": 512},
        "conditions": {
            "base_0shot": {"base": entry(53)},
            "icl_8shot": {"base": entry(95)},
            "baseline": {f"step_{s}": entry(c) for s, c in SFT_CORRECT.items()},
            "online_v1": {f"step_{s}": entry(c) for s, c in DIST_CORRECT.items()},
        },
    }


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def write_metrics_run(run_dir: Path, steps: int = 20, distillation: bool = False, condition: str | None = None) -> Path:
    """A run dir with a metrics.jsonl in the documented training format (and optionally a run_config.yaml)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        ce = 2.0 / step**0.5
        record = {"step": step, "epoch": step / steps, "train/ce_loss": ce, "train/total_loss": ce,
                  "train/lr": 1e-4, "train/grad_norm": 1.0, "train/tokens_per_s": 500.0, "elapsed_s": 1.5 * step}
        if distillation:
            record["train/dist_loss"] = 0.5 / step
            record["train/total_loss"] = ce + 0.5 * record["train/dist_loss"]
        lines.append(json.dumps(record))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if condition is not None:
        (run_dir / "run_config.yaml").write_text(f"condition: {condition}\nmodel:\n  name: Qwen/Qwen3-1.7B\n")
    return run_dir


# ----------------------------------------------------------------------------- numerics

def saved_vocab_sized_bytes(run, vocab: int) -> list[int]:
    """Bytes of every tensor with a last dimension of `vocab` that autograd saves for backward while
    `run()` builds its graph: the memory test of the fused answer-window losses."""
    import torch

    saved = []

    def pack(tensor):
        if tensor.dim() >= 2 and tensor.size(-1) == vocab:
            saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return saved


def ulps_apart(actual, expected):
    """Per element, |actual - expected| in units in the last place of `expected` (its dtype's spacing there).

    Golden files written on one CPU are compared with this, not bit for bit: another CPU may sum the same
    floats in another order (vector width, threads) and land an ulp or two away.
    """
    import torch

    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (actual.dtype, expected.dtype)
    info = torch.finfo(expected.dtype)
    magnitude = expected.double().abs().clamp_min(info.tiny)
    spacing = info.eps * torch.exp2(torch.floor(torch.log2(magnitude)))
    return (actual.double() - expected.double()).abs() / spacing


def assert_within_ulps(actual, expected, max_ulps: int = 4):
    distance = ulps_apart(actual, expected)
    assert float(distance.max()) <= max_ulps, (
        f"{int((distance > max_ulps).sum())} elements more than {max_ulps} ulps apart (max {float(distance.max()):.1f})")


# ----------------------------------------------------------------------------- attention kernels
# cuDNN's SDPA on Hopper is reported to return NaN for a query row that sees no key (pytorch #196678),
# where PyTorch's CPU kernels return 0. This stands in for it on CPU, so that code can be tested against
# whatever a kernel returns for such rows.

def nan_for_keyless_query_rows(real_sdpa):
    """scaled_dot_product_attention that returns NaN in every query row whose mask shows it no key."""
    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        out = real_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, **kwargs)
        if attn_mask is None:  # no mask, or is_causal: every query sees at least itself
            return out
        visible = attn_mask if attn_mask.dtype == torch.bool else attn_mask > torch.finfo(attn_mask.dtype).min
        keyless = ~visible.any(dim=-1, keepdim=True)  # [B, 1 or H, Q, 1]
        return out.masked_fill(keyless, float("nan"))
    return sdpa


@contextlib.contextmanager
def sdpa_nan_for_keyless_rows():
    """Within it, torch's SDPA (which transformers' sdpa attention calls) returns NaN for keyless rows."""
    real = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = nan_for_keyless_query_rows(real)
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
