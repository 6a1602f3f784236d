"""The step benchmark on a GPU in one command (`make bench-gpu`; also the bench stage of `make gpu-check`).

Budgeted at 8 minutes on one GPU (not yet timed on one); scripts/bench_gpu.py only calls `main`.

Needs only torch, transformers and peft (no datasets, no model hub; vLLM only for its one row), so it
runs on a bare GPU machine. Writes one JSON (default docs/bench_gpu.json) that docs/performance.md cites:

  bench.<attention>     fewshot_distill/bench/step_bench.py at the qwen3-1.7b shape (random weights from its
                        config, bf16): sft, reference, ours, ours_cached, fixed, fixed_reuse, onpolicy
                        (generation / teacher / student split, 128 sampled tokens per row), the on-policy
                        optimizer step sampled per micro-batch and per step (onpolicy_hf_micro,
                        onpolicy_hf_step, and onpolicy_vllm_merged when vLLM is installed) with sdpa;
                        sft, ours, fixed_reuse with flash_attention_2 when `flash_attn` imports. Median
                        step times, torch.cuda.max_memory_allocated per variant (each variant is its own
                        process), the FLOP model, and the shared-prefix teacher's bf16 difference from
                        the full-sequence teacher (fixed_reuse.prefix_vs_full_teacher).
  fused_loss_check      the fused answer-window CE + top-K MSE against the unfused reference on the
                        device, float32 and bf16 logits: loss values and logit gradients, with tolerances.

Data: GSM8K train rows and the Qwen3 tokenizer from --data / --tokenizer, else from shared/ inside the
repo or beside it (../shared) when present, else the repo's own problems (data/smoke) and the offline
tokenizer of fewshot_distill/models/tiny_model.py (shorter sequences than GSM8K: the JSON records which was used).

    make bench-gpu                                             # GPU, writes docs/bench_gpu.json
    python scripts/bench_gpu.py --data ../shared/data/gsm8k --tokenizer ../shared/tokenizers/qwen3
    python scripts/bench_gpu.py --dry-run --json /tmp/bench_gpu_dry.json   # CPU, tiny shape, ~1 minute
    python scripts/bench_gpu.py --variants sft,reference,ours,onpolicy   # a subset (make gpu-check)

--dry-run reads the repo's own problems and offline tokenizer unless --data / --tokenizer are given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from fewshot_distill.losses.reference import gather_vocab, masked_cross_entropy, masked_mse
from fewshot_distill.losses.window_kernel import answer_window_losses

REPO_ROOT = Path(__file__).resolve().parents[2]

SDPA_VARIANTS = "sft,reference,ours,ours_cached,fixed,fixed_reuse,onpolicy,onpolicy_hf_micro,onpolicy_hf_step"
# The on-policy step with the vLLM sampler (merged weight sync), when vLLM is installed (not in a dry run).
VLLM_VARIANTS = "onpolicy_vllm_merged"
FLASH_VARIANTS = "sft,ours,fixed_reuse"
# Flash-attention runs only if the sdpa pass left this much of the budget (seconds).
FLASH_MIN_SECONDS_LEFT = 150


def find_shared(explicit: str | None, subfolder: str, marker: str, flag: str) -> Path | None:
    """The given folder, or `shared/<subfolder>` in or beside the repo, if it holds `marker`; None when
    nothing was given and neither exists. A given folder without `marker` stops with one line."""
    candidates = [Path(explicit)] if explicit else [REPO_ROOT / "shared" / subfolder,
                                                    REPO_ROOT.parent / "shared" / subfolder]
    for folder in candidates:
        if (folder / marker).is_file():
            return folder
    if explicit:
        raise SystemExit(f"{flag} {explicit} has no {marker}; pass the right folder or omit {flag}")
    return None


def find_data(explicit: str | None) -> tuple[Path, str]:
    """GSM8K folder with train.jsonl: the given one, shared/ in or beside the repo, else data/smoke."""
    folder = find_shared(explicit, "data/gsm8k", "train.jsonl", "--data")
    if folder is not None:
        return folder, "gsm8k"
    return REPO_ROOT / "data" / "smoke", "smoke problems (data/smoke): shorter than GSM8K"


def find_tokenizer(explicit: str | None, scratch: Path) -> tuple[Path, str]:
    """Qwen3 tokenizer folder: the given one, shared/ in or beside the repo, else the offline BPE one."""
    folder = find_shared(explicit, "tokenizers/qwen3", "tokenizer.json", "--tokenizer")
    if folder is not None:
        return folder, "qwen3"
    return offline_tokenizer(scratch)


def offline_tokenizer(scratch: Path) -> tuple[Path, str]:
    """The project's byte-level BPE tokenizer trained on its own problems, saved under `scratch`."""
    from fewshot_distill.models.tiny_model import default_tokenizer_texts, train_bpe_tokenizer

    folder = scratch / "offline_tokenizer"
    train_bpe_tokenizer(default_tokenizer_texts()).save_pretrained(str(folder))
    return folder, "offline BPE tokenizer (fewshot_distill/models/tiny_model.py), Qwen3-style chat template"


def fused_loss_check(device: torch.device, dtype: torch.dtype, batch: int, width: int, vocab: int, k: int) -> dict:
    """Fused `answer_window_losses` vs `masked_cross_entropy` + `masked_mse(gather_vocab)`: values, grads.

    Tolerance: loss values rtol 1e-5 (both compute in float32); gradients torch.testing.assert_close's
    default for the logits' dtype (float32: rtol 1.3e-6, atol 1e-5; bf16: rtol 1.6e-2, atol 1e-5),
    i.e. one rounding of the same float32 gradient to the logits' dtype.
    """

    generator = torch.Generator(device="cpu").manual_seed(0)
    logits = (torch.randn(batch, width, vocab, generator=generator) * 3).to(device=device, dtype=dtype)
    target_ids = torch.randint(0, vocab, (batch, width), generator=generator).to(device)
    target_mask = (torch.rand(batch, width, generator=generator) < 0.85).to(device)
    teacher_ids = torch.stack([torch.randperm(vocab, generator=generator)[:k] for _ in range(batch * width)])
    teacher_ids = teacher_ids.view(batch, width, k).to(device)
    teacher_values = (torch.randn(batch, width, k, generator=generator) * 3).to(device)
    mse_mask = (torch.rand(batch, width, generator=generator) < 0.85).to(device)

    fused_input = logits.clone().requires_grad_()
    ce, mse = answer_window_losses(fused_input, target_ids, target_mask, teacher_ids, teacher_values, mse_mask)
    (ce + 0.5 * mse).backward()
    plain_input = logits.clone().requires_grad_()
    plain_ce = masked_cross_entropy(plain_input, target_ids, target_mask)
    plain_mse = masked_mse(teacher_values, gather_vocab(plain_input, teacher_ids), mse_mask)
    (plain_ce + 0.5 * plain_mse).backward()

    result = {"device": str(device), "dtype": str(dtype).replace("torch.", ""), "shape": [batch, width, vocab],
              "k": k, "ce": ce.item(), "ce_reference": plain_ce.item(), "mse": mse.item(),
              "mse_reference": plain_mse.item(),
              "max_abs_grad_diff": float((fused_input.grad.float() - plain_input.grad.float()).abs().max()),
              "max_abs_grad": float(plain_input.grad.float().abs().max())}
    try:
        torch.testing.assert_close(ce.detach(), plain_ce.detach(), rtol=1e-5, atol=0)
        torch.testing.assert_close(mse.detach(), plain_mse.detach(), rtol=1e-5, atol=0)
        torch.testing.assert_close(fused_input.grad, plain_input.grad)
        result["equal_within_tolerance"] = True
    except AssertionError as error:
        result["equal_within_tolerance"] = False
        result["mismatch"] = str(error).splitlines()[0]
    return result


def summarise(report: dict) -> dict:
    """Step time and peak memory of every variant as multiples of SFT's, from one bench report."""
    sft = report["sft"]
    summary = {}
    for name, row in report.items():
        if isinstance(row, dict) and "median_step_s" in row:
            summary[name] = {"step_x_sft": row["median_step_s"] / sft["median_step_s"],
                             "peak_mem_x_sft": row["peak_mem_bytes"] / sft["peak_mem_bytes"]}
    miss = report.get("details", {}).get("ours_cached", {}).get("miss_step_s")
    if miss:
        summary["ours_cached_miss"] = {"step_x_sft": miss / sft["median_step_s"]}
    onpolicy = report.get("details", {}).get("onpolicy")
    if onpolicy:  # where the on-policy step's time goes
        summary["onpolicy_split"] = {f"{part}_x_sft": onpolicy[f"{part}_step_s"] / sft["median_step_s"]
                                     for part in ("generation", "teacher", "student")}
    for name, row in report.get("details", {}).items():  # one optimizer step: the generation share
        if name.startswith("onpolicy_") and "generation_step_s" in row and name in summary:
            summary[name]["generation_share"] = row["generation_step_s"] / row["median_step_s"]
    return summary


def bench_args(args, data: Path, tokenizer: Path, attention: str, variants: str, out: Path) -> list[str]:
    common = ["--data", str(data), "--tokenizer", str(tokenizer), "--attn", attention, "--variants", variants,
              "--json", str(out)]
    if args.dry_run:
        return common + ["--model", "tiny", "--device", "cpu", "--dtype", "float32", "--batch-size", "1",
                         "--n-batches", "1", "--warmup", "0", "--repeats", "1", "--shots", "2", "--k", "16",
                         "--length-sample", "2", "--gen-tokens", "4", "--in-process"]
    return common + ["--model", "qwen3-1.7b", "--device", "cuda", "--dtype", "bfloat16", "--batch-size", "4",
                     "--n-batches", str(args.n_batches), "--warmup", "1", "--repeats", str(args.repeats),
                     "--length-sample", "64", "--gen-tokens", str(args.gen_tokens)]


def save(report: dict, path: str, started: float) -> None:
    report["wall_s"] = time.perf_counter() - started
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny shape on the CPU: checks the script, not speed")
    parser.add_argument("--data", help="GSM8K folder with train.jsonl (default: shared/ if present, else data/smoke)")
    parser.add_argument("--tokenizer", help="Qwen3 tokenizer folder (default: shared/ if present, else offline)")
    parser.add_argument("--json", default=str(REPO_ROOT / "docs" / "bench_gpu.json"))
    parser.add_argument("--budget-s", type=float, default=480, help="flash-attention is skipped past this")
    parser.add_argument("--variants", default=SDPA_VARIANTS,
                        help=f"step_bench variants with sdpa (default {SDPA_VARIANTS})")
    # make gpu-check times fewer steps and samples fewer tokens to fit its budget (fewshot_distill/bench/gpu_check.py).
    parser.add_argument("--n-batches", type=int, default=2, help="distinct batches per variant (GPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the batches (GPU)")
    parser.add_argument("--gen-tokens", type=int, default=128, help="onpolicy: new tokens sampled per row (GPU)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
                         "use --dry-run to check the script on the CPU")
    from fewshot_distill.bench import step_bench
    from fewshot_distill.bench.step_data import VOCAB_SIZE
    from fewshot_distill.bench.step_report import machine_info

    started = time.perf_counter()
    device = torch.device("cpu" if args.dry_run else "cuda")
    report = {"command": " ".join(["scripts/bench_gpu.py", *(argv if argv is not None else sys.argv[1:])]),
              "dry_run": args.dry_run, "machine": machine_info(str(device)), "bench": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.dry_run and not (args.data or args.tokenizer):  # hermetic: the repo's own problems and tokenizer
            data, data_source = REPO_ROOT / "data" / "smoke", "smoke problems (data/smoke)"
            tokenizer, tokenizer_source = offline_tokenizer(scratch)
        else:
            data, data_source = find_data(args.data)
            tokenizer, tokenizer_source = find_tokenizer(args.tokenizer, scratch)
        report["data"] = {"rows": str(data), "rows_source": data_source, "tokenizer": str(tokenizer),
                          "tokenizer_source": tokenizer_source}

        # First: it takes seconds, so even a run cut short by a time limit has it.
        print("== fused CE + MSE vs unfused reference", flush=True)
        shape = (1, 32, 4096, 16) if args.dry_run else (4, 160, VOCAB_SIZE, 256)
        report["fused_loss_check"] = [fused_loss_check(device, dtype, *shape)
                                      for dtype in (torch.float32, torch.bfloat16)]
        print(json.dumps([{k: c[k] for k in ("dtype", "equal_within_tolerance", "max_abs_grad_diff")}
                          for c in report["fused_loss_check"]]), flush=True)
        save(report, args.json, started)

        try:
            import flash_attn  # noqa: F401
            has_flash = not args.dry_run
        except ImportError:
            has_flash = False
        sdpa_variants = args.variants
        if args.variants == SDPA_VARIANTS and not args.dry_run and importlib.util.find_spec("vllm") is not None:
            sdpa_variants += "," + VLLM_VARIANTS
        elif "vllm" not in args.variants:
            report["bench"]["vllm_rows"] = {"skipped": "dry run" if args.dry_run else
                                            "vllm is not installed" if importlib.util.find_spec("vllm") is None
                                            else "not asked for (--variants)"}
        runs = [("sdpa", sdpa_variants)] + ([("flash_attention_2", FLASH_VARIANTS)] if has_flash else [])
        if not has_flash:
            report["bench"]["flash_attention_2"] = {"skipped": "flash_attn does not import" if not args.dry_run
                                                    else "dry run"}
        for attention, variants in runs:
            left = args.budget_s - (time.perf_counter() - started)
            if attention != "sdpa" and left < FLASH_MIN_SECONDS_LEFT:
                report["bench"][attention] = {"skipped": f"time budget: {left:.0f} s left"}
                continue
            out = scratch / f"bench_{attention}.json"
            print(f"== step benchmark, attention {attention}: {variants}", flush=True)
            try:
                step_bench.main(bench_args(args, data, tokenizer, attention, variants, out))
            except subprocess.CalledProcessError as error:  # one failing variant keeps the other parts
                worker = error.cmd[error.cmd.index("--worker") + 1]
                report["bench"][attention] = {"failed": f"variant {worker} exited with {error.returncode}"}
                save(report, args.json, started)
                continue
            bench = json.loads(out.read_text())
            bench["summary"] = summarise(bench)
            report["bench"][attention] = bench
            save(report, args.json, started)  # a run cut short still leaves what it measured
    save(report, args.json, started)
    print(json.dumps({attention: bench.get("summary", bench) for attention, bench in report["bench"].items()},
                     indent=2))
    failed = [attention for attention, bench in report["bench"].items() if "failed" in bench]
    if failed:
        raise SystemExit(f"bench_gpu: the step benchmark failed with {', '.join(failed)} (worker traceback "
                         f"above); everything else is in {args.json}")
    print(f"wrote {args.json} in {report['wall_s']:.0f} s", flush=True)
    return report


if __name__ == "__main__":
    main()
