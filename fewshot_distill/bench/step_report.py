"""The step benchmark's report: the whole-run estimate from per-step costs, and the tables it prints."""

from __future__ import annotations

import torch

from fewshot_distill.bench.step_data import PAPER_BATCH, PAPER_STEPS
from fewshot_distill.bench.step_variants import ONPOLICY_STEP_VARIANTS
from fewshot_distill.utils import gpu_env

def machine_info(device: str) -> dict:
    return {**gpu_env.machine_info(), "device": device, "torch_threads_parent": torch.get_num_threads()}


def whole_run(results: dict, batch_size: int, n_unique: int) -> dict:
    """Paper schedule from per-step costs: first sight of each example = miss step, the rest = hit."""
    total = PAPER_STEPS * PAPER_BATCH
    per_example = {name: r["median_step_s"] / batch_size for name, r in results.items()}
    out = {"examples_seen": total, "unique_examples": n_unique,
           "sft_s": total * per_example["sft"]}
    if "reference" in results:
        out["reference_s"] = total * per_example["reference"]
    if "ours" in results:
        teacher = results["ours"]["teacher_step_s"] / batch_size
        out["floor_s"] = out["sft_s"] + n_unique * teacher
        out["ours_uncached_s"] = total * per_example["ours"]
    if "ours_cached" in results:
        miss = results["ours_cached"]["miss_step_s"] / batch_size
        out["ours_cached_s"] = n_unique * miss + (total - n_unique) * per_example["ours_cached"]
    if "fixed" in results:
        out["fixed_uncached_s"] = total * per_example["fixed"]
    if "onpolicy" in results:  # every step samples anew: nothing to cache
        out["onpolicy_s"] = total * per_example["onpolicy"]
    if "fixed_reuse" in results:
        prefix_once = results["fixed_reuse"]["shot_prefix_s"]
        out["fixed_reuse_uncached_s"] = total * per_example["fixed_reuse"] + prefix_once
        if "ours_cached" in results:  # with the teacher cache: hit steps cost what ours' hit steps cost
            out["fixed_reuse_cached_s"] = (n_unique * per_example["fixed_reuse"]
                                           + (total - n_unique) * per_example["ours_cached"] + prefix_once)
    for name in ("reference_s", "floor_s", "ours_uncached_s", "ours_cached_s", "fixed_uncached_s",
                 "fixed_reuse_uncached_s", "fixed_reuse_cached_s", "onpolicy_s"):
        if name in out:
            out[name.replace("_s", "_over_sft")] = out[name] / out["sft_s"]
    if "floor_s" in out and "ours_cached_s" in out:
        out["ours_cached_over_floor"] = out["ours_cached_s"] / out["floor_s"]
    if "reference_s" in out and "ours_cached_s" in out:
        out["reference_over_ours_cached"] = out["reference_s"] / out["ours_cached_s"]
    return out


def format_table(results: dict, flops: dict, whole: dict) -> str:
    sft = results["sft"]
    lines = ["| variant | median step (s) | min step (s) | x SFT | ideal x SFT (FLOPs) | peak mem (MiB) | mem x SFT | "
             "student tokens/s |", "|---|---|---|---|---|---|---|---|"]
    rows = [(name, r["median_step_s"], r["peak_mem_bytes"], r["tokens_per_s"], flops.get(name), r["min_step_s"])
            for name, r in results.items() if name not in ONPOLICY_STEP_VARIANTS]
    if "ours_cached" in results:
        rows = [row for row in rows if row[0] != "ours_cached"]
        r = results["ours_cached"]
        rows.append(("ours, cache miss", r["miss_step_s"], r["peak_mem_bytes"], None, flops.get("ours"), None))
        rows.append(("ours, cache hit", r["median_step_s"], r["peak_mem_bytes"], r["tokens_per_s"],
                     flops.get("ours_hit"), r["min_step_s"]))
    for name, flop_name in (("ours", "teacher"), ("fixed", "teacher_fixed"), ("fixed_reuse", "teacher_fixed_reuse")):
        if name in results:
            rows.append((f"({name}: teacher top-K alone)", results[name]["teacher_step_s"], None, None,
                         flops.get(flop_name), None))
    for name, seconds, peak, tps, flop, fastest in rows:
        lines.append("| {} | {:.3f} | {} | {:.2f} | {} | {} | {} | {} |".format(
            name, seconds, f"{fastest:.3f}" if fastest else "-", seconds / sft["median_step_s"],
            f"{flop / flops['sft']:.2f}" if flop else "-",
            f"{peak / 2**20:.0f}" if peak else "-",
            f"{peak / sft['peak_mem_bytes']:.2f}" if peak else "-",
            f"{tps:.0f}" if tps else "-"))
    step_rows = [name for name in ONPOLICY_STEP_VARIANTS if name in results]
    if step_rows:
        lines.append("")
        lines.append(f"on-policy optimizer step ({results[step_rows[0]]['micro_batches_per_step']} micro-batches; "
                     "seconds per micro-batch):")
        lines.append("| variant | step (s) | x SFT | generation (s) | generation share | of which weight sync (s) "
                     "| teacher (s) | student (s) | peak mem (MiB) | engine start (s) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for name in step_rows:
            r = results[name]
            lines.append(f"| {name} | {r['median_step_s']:.3f} | {r['median_step_s'] / sft['median_step_s']:.2f} | "
                         f"{r['generation_step_s']:.3f} | {r['generation_step_s'] / r['median_step_s']:.0%} | "
                         f"{r['sync_step_s']:.3f} | {r['teacher_step_s']:.3f} | {r['student_step_s']:.3f} | "
                         f"{r['peak_mem_bytes'] / 2**20:.0f} | {r['engine_startup_s']:.1f} |")
        if "onpolicy_hf_micro" in results:
            base = results["onpolicy_hf_micro"]["median_step_s"]
            lines.append("step time / onpolicy_hf_micro: " + ", ".join(
                f"{name} {results[name]['median_step_s'] / base:.2f}x" for name in step_rows))
    if "onpolicy" in results:
        r = results["onpolicy"]
        for part in ("generation", "teacher", "student"):
            lines.append(f"| (onpolicy: {part}) | {r[f'{part}_step_s']:.3f} | - | "
                         f"{r[f'{part}_step_s'] / sft['median_step_s']:.2f} | - | - | - | - |")
        lines.append("")
        lines.append(f"onpolicy: {r['sample_len']:.0f} sampled tokens per row (--gen-tokens "
                     f"{r['gen_tokens']}); generation {r['generation_step_s'] / r['median_step_s']:.0%} "
                     "of its step")
    if "reference" in results and "ours" in results:
        lines.append("")
        lines.append(f"reference / ours (online step): {results['reference']['median_step_s'] / results['ours']['median_step_s']:.2f}x"
                     f" (ideal {flops['reference'] / flops['ours']:.2f}x)")
    if "reference" in results and "ours_cached" in results:
        lines.append(f"reference / ours (cache-hit step): "
                     f"{results['reference']['median_step_s'] / results['ours_cached']['median_step_s']:.2f}x "
                     f"(ideal {flops['reference'] / flops['ours_hit']:.2f}x)")
    if whole:
        lines.append("")
        lines.append(f"whole run ({PAPER_STEPS} x {PAPER_BATCH} over {whole['unique_examples']} unique examples), "
                     "from the per-step medians:")
        for key, value in whole.items():
            if key.endswith("_s"):
                lines.append(f"  {key[:-2]}: {value:.0f} s ({whole.get(key[:-2] + '_over_sft', 1.0):.2f}x SFT)")
        for key in ("ours_cached_over_floor", "reference_over_ours_cached"):
            if key in whole:
                lines.append(f"  {key}: {whole[key]:.3f}")
    return "\n".join(lines)


def format_flops(flops: dict, whole: dict) -> str:
    """The FLOP model: TFLOP per micro-batch and x SFT, then the whole-run multiples of the SFT run."""
    lines = ["| per micro-batch | TFLOP | x SFT |", "|---|---|---|"]
    for name, value in flops.items():
        lines.append(f"| {name} | {value / 1e12:.2f} | {value / flops['sft']:.2f} |")
    lines += ["", "| whole run (paper schedule) | x SFT run |", "|---|---|"]
    lines += [f"| {name[:-len('_over_sft')]} | {value:.2f} |" for name, value in whole.items()]
    return "\n".join(lines)
