"""docs/measured.md's "Measured in this repository", the README's summary of it and the make icl-demo blocks,
generated from the committed outputs under assets/ (scripts/write_measured.py is the command).

Reads assets/mini/ (diagnostics.json, pipeline_times.json, {run}/metrics.jsonl, {run}/run_config.yaml),
assets/mini_onpolicy/ and assets/mini_full/ when present (the same files; on-policy runs add samples.jsonl),
assets/published_results.json, and for the icl-demo blocks assets/icl_demo/study.json. No number in any of
them is typed by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from fewshot_distill.results.diagnostics import diagnostics_markdown, load_diagnostics
from fewshot_distill.results.labels import label_for
from fewshot_distill.results.load import load_many, last_checkpoint
from fewshot_distill.results.metrics import read_metrics_jsonl
from fewshot_distill.results.study import key_pairs, pair_reading, study_markdown, tasks_table_markdown
from fewshot_distill.results.tables import main_table
from fewshot_distill.utils.io import replace_between_markers

START, END = "<!-- measured:start -->", "<!-- measured:end -->"
SUMMARY_START, SUMMARY_END = "<!-- measured-summary:start -->", "<!-- measured-summary:end -->"
ICL_DEMO_START, ICL_DEMO_END = "<!-- icl-demo:start -->", "<!-- icl-demo:end -->"
ICL_DEMO_DOC_START, ICL_DEMO_DOC_END = "<!-- icl-demo-full:start -->", "<!-- icl-demo-full:end -->"
SUMMARY_COLUMNS = ("checkpoint", "nll", "kl", "gap_closed_nll", "gap_closed_kl")


def link(target: Path, doc_dir: Path) -> str:
    """`target` (a repo-relative path) as a link from a page in `doc_dir`."""
    return Path(os.path.relpath(target, doc_dir)).as_posix()


def run_timing(records: list[dict]) -> dict:
    """Mean seconds per optimizer step (eval passes excluded) and per in-training eval pass."""
    train = [r for r in records if "elapsed_s" in r and r["step"] > 0]
    evals = [r for r in records if "eval/seconds" in r]
    in_loop_evals = sum(r["eval/seconds"] for r in evals if r["step"] > 0)
    steps = train[-1]["step"] if train else 0
    step_seconds = (training_seconds(records) - in_loop_evals) / steps if steps else None
    eval_seconds = sum(r["eval/seconds"] for r in evals) / len(evals) if evals else None
    return {"steps": steps, "step_seconds": step_seconds, "eval_seconds": eval_seconds, "evals": len(evals),
            "final_ce": train[-1].get("train/ce_loss") if train else None}


def training_seconds(records: list[dict]) -> float:
    """Seconds a run trained, summed over its launches: `elapsed_s` restarts at 0 when a run is resumed,
    so each launch's last value counts once."""
    total, previous = 0.0, 0.0
    for r in sorted((r for r in records if "elapsed_s" in r), key=lambda r: r["step"]):
        if r["elapsed_s"] < previous:  # a resumed launch began
            total += previous
        previous = r["elapsed_s"]
    return total + previous


def run_elapsed(metrics: Path) -> float:
    """Seconds of training of a run (all its launches) up to its last logged step."""
    return training_seconds(read_metrics_jsonl(metrics))


def onpolicy_markdown(onpolicy: Path, mini_conditions: dict, doc_dir: Path = Path(".")) -> list[str]:
    """The on-policy runs beside the off-policy distillation run: held-out diagnostics per checkpoint,
    then what the student sampled over training (length, EOS, generation time) per run."""
    diagnostics = load_diagnostics(onpolicy / "diagnostics.json")
    conditions = diagnostics["conditions"]
    times = json.loads((onpolicy / "pipeline_times.json").read_text())
    runs = sorted(p.name for p in onpolicy.iterdir() if (p / "metrics.jsonl").is_file())
    configs = {run: yaml.safe_load((onpolicy / run / "run_config.yaml").read_text()) for run in runs}
    cfg = configs[runs[0]]
    dist, gen = cfg["distillation"], cfg["generation"]
    last_steps = {run: max(r["step"] for r in read_metrics_jsonl(onpolicy / run / "metrics.jsonl")) for run in runs}
    same_base = all(conditions[c]["base"] == mini_conditions[c]["base"] for c in conditions
                    if "base" in conditions[c] and c in mini_conditions)
    lines = [
        "",
        f"**On-policy distillation** (`make mini-onpolicy`, [`assets/mini_onpolicy/`]({link(onpolicy, doc_dir)})): the "
        f"same rows, lr schedule ({cfg['training']['max_steps']} steps) and held-out rows, but every step the student "
        f"samples its own answer to each "
        f"question (temperature {gen['temperature']}, top-p {gen['top_p']}, at most {gen['max_new_tokens']} new "
        f"tokens) and the {cfg['data']['num_fewshot_examples']}-shot teacher ({dist['teacher_weights']} weights) "
        f"scores those tokens (LoRA dropout {cfg['lora']['dropout']} in the scored forward); "
        f"no CE, loss = {dist['lambda_distill']} x the distillation term on the teacher's top-"
        f"{dist['n_top_logits']} ids ("
        + ", ".join(f"`{run}`: `{c['distillation']['loss']}`" for run, c in configs.items())
        + f"; {dist['alignment']} alignment as above). Training time (each run's metrics.jsonl, all its "
        "launches, in-training eval passes included): "
        + ", ".join(f"`{run}` {run_elapsed(onpolicy / run / 'metrics.jsonl'):.0f} s" for run in runs)
        + "".join(f" (resumed from `{Path(info['resumed_from']).name}`)" for info in
                  [json.loads((onpolicy / run / "run_info.json").read_text()) for run in runs] if info.get("resumed_from"))
        + f"; diagnostics of the last launch {times['diagnostics_seconds']} s. The base rows of its "
        f"diagnostics {'equal' if same_base else 'DIFFER FROM'} those above (the same held-out rows). The "
        "off-policy distillation run is the one above, not re-run." + "".join(
            f" `{run}` was stopped after step {last} of {configs[run]['training']['max_steps']} (CPU time): the "
            "checkpoints it saved before are scored, to compare with the off-policy run at the same step."
            for run, last in last_steps.items() if last < configs[run]['training']['max_steps']),
        "",
        diagnostics_markdown({**{c: labels for c, labels in conditions.items()},
                              "online_v1": mini_conditions["online_v1"]}),
        "",
        "What the student sampled (from each run's metrics.jsonl and samples.jsonl; per optimizer step, means over "
        "its micro-batches):",
        "",
        "| run | step | sample length (tokens) | ended with EOS | empty samples / micro-batch | generation s / "
        "micro-batch | distillation loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    totals = []
    for run in runs:
        for r in read_metrics_jsonl(onpolicy / run / "metrics.jsonl"):
            if "train/sample_len" in r:
                lines.append(f"| {run} | {r['step']} | {r['train/sample_len']:.1f} | {r['train/sample_eos_frac']:.3f} | "
                             f"{r['train/empty_samples']:.2f} | {r['train/gen_seconds']:.1f} | "
                             f"{r['train/dist_loss']:.4f} |")
        samples = [json.loads(line) for line in (onpolicy / run / "samples.jsonl").read_text().splitlines() if line]
        limited = sum(1 for s in samples if not s["eos"])
        steps = sorted({s["step"] for s in samples})
        totals.append(f"`{run}`: {limited} of {len(samples)} samples (written at steps {steps[0]}-{steps[-1]}) reached "
                      f"the {gen['max_new_tokens']}-token limit without EOS, {sum(1 for s in samples if s['empty'])} "
                      "were empty")
    lines += ["", "; ".join(totals) + "."]
    return lines


def training_runs_table(mini: Path) -> list[str]:
    """One line per run folder of `mini`: steps, final CE, seconds per step and per in-training eval pass."""
    lines = ["| run | steps | final train CE | s / optimizer step | in-training eval passes | s / eval pass |",
             "|---|---:|---:|---:|---:|---:|"]
    for run in sorted(p.name for p in mini.iterdir() if (p / "metrics.jsonl").is_file()):
        timing = run_timing(read_metrics_jsonl(mini / run / "metrics.jsonl"))
        condition = json.loads((mini / run / "run_info.json").read_text()).get("condition", run)

        def fmt(value, digits=1):
            return "–" if value is None else f"{value:.{digits}f}"

        lines.append(f"| {label_for(condition)} | {timing['steps']} | {fmt(timing['final_ce'], 4)} | "
                     f"{fmt(timing['step_seconds'])} | {timing['evals']} | {fmt(timing['eval_seconds'])} |")
    return lines


def full_finetune_runs(mini_full: Path, full: dict) -> tuple[dict[str, str], dict[str, dict]]:
    """The pipeline names the runs by folder (baseline, online_v1); each run's condition is in its run_info.json.
    Returns {folder: condition} and {condition: its diagnostics labels}."""
    run_folders = {c: json.loads((mini_full / c / "run_info.json").read_text())["condition"]
                   for c in full["conditions"] if (mini_full / c / "run_info.json").is_file()}
    return run_folders, {run_folders[c]: labels for c, labels in full["conditions"].items() if c in run_folders}


def full_finetune_markdown(mini_full: Path, mini: Path) -> list[str]:
    """The `make mini-full` runs beside the LoRA mini's: same rows, steps and held-out rows (checked)."""
    full, lora = load_diagnostics(mini_full / "diagnostics.json"), load_diagnostics(mini / "diagnostics.json")
    if full["subset_indices"] != lora["subset_indices"] or full["model"] != lora["model"]:
        raise ValueError(f"{mini_full} and {mini} score different held-out rows or models: rerun make mini-full")
    cfg = yaml.safe_load((mini_full / "online_v1" / "run_config.yaml").read_text())
    lora_cfg = yaml.safe_load((mini / "online_v1" / "run_config.yaml").read_text())
    for section, key in (("data", "max_train_examples"), ("training", "max_steps"),
                         ("training", "per_device_train_batch_size"), ("training", "gradient_accumulation_steps"),
                         ("data", "num_fewshot_examples"), ("distillation", "n_top_logits")):
        if cfg[section][key] != lora_cfg[section][key]:
            raise ValueError(f"{mini_full}: {section}.{key} differs from the LoRA mini's; the rows would not compare")
    times = json.loads((mini_full / "pipeline_times.json").read_text())
    run_folders, full_runs = full_finetune_runs(mini_full, full)
    # The base rows are the LoRA mini's (the same model and held-out rows); its SFT and distillation runs beside.
    beside = {c: lora["conditions"][c] for c in lora["conditions"] if c in ("base_0shot", "baseline", "online_v1")
              or c.startswith("icl_")}
    last = {c: dict([last_checkpoint(labels)]) for c, labels in (beside | full_runs).items()}
    return [
        f"Full fine-tuning (`make mini-full`, presets `configs/mini_full/`): the same model, rows, steps, batch, "
        f"shots and held-out rows, every weight trained (float32, lr {cfg['training']['lr']}) instead of a LoRA "
        "adapter; the distillation teacher is a frozen copy of the starting weights. Training time (each run's "
        "metrics.jsonl, all its launches, in-training eval passes included): "
        + ", ".join(f"{label_for(c)} {run_elapsed(mini_full / folder / 'metrics.jsonl'):.0f} s"
                    for folder, c in run_folders.items())
        + f"; held-out diagnostics of the last `make mini-full` launch: {times['diagnostics_seconds']} s. Last "
        "checkpoint of each run, beside the LoRA runs and the base rows above:",
        "",
        diagnostics_markdown(last),
        "",
        "<details><summary>Every checkpoint of the full fine-tuning runs, and their training</summary>",
        "",
        diagnostics_markdown(full_runs),
        "",
        *training_runs_table(mini_full),
        "",
        "</details>",
        "",
    ]


def measured_markdown(mini: Path, published: Path, onpolicy: Path | None = None,
                      mini_full: Path | None = None, doc_dir: Path = Path(".")) -> str:
    """The full section; links are written relative to `doc_dir`, the folder of the page that holds it."""
    diagnostics = load_diagnostics(mini / "diagnostics.json")
    conditions = diagnostics["conditions"]
    times = json.loads((mini / "pipeline_times.json").read_text())
    cfg = yaml.safe_load((mini / "online_v1" / "run_config.yaml").read_text())
    data, training = cfg["data"], cfg["training"]
    batch = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    header = diagnostics["engine"]
    lines = [
        f"Model `{diagnostics['model']}` (SmolLM2-135M-Instruct, real pretrained weights, `make real-model`), "
        f"trained by `make mini` on CPU in float32: {data['max_train_examples']} GSM8K train rows, "
        f"{training['max_steps']} optimizer steps of batch {batch} (lr {training['lr']}), "
        f"{data['num_fewshot_examples']}-shot teacher, K = {cfg['distillation']['n_top_logits']}, "
        f"lambda = {cfg['distillation']['lambda_distill']}. Held-out diagnostics on "
        f"{len(diagnostics['subset_indices'])} GSM8K test rows (teacher-forced on the gold answers; top-K MSE "
        f"with K = {header['mse_top_k']}, {header['alignment']} alignment). `make mini` wall time: "
        f"{times['mini_wall_seconds']} s (training {times['train_seconds']} s, diagnostics "
        f"{times['diagnostics_seconds']} s) on a 2-core CPU machine.",
        "",
        "Last checkpoint of each run and the two base rows:",
        "",
        diagnostics_markdown({c: dict([last_checkpoint(labels)]) for c, labels in conditions.items()}),
        "",
        "<details><summary>Every checkpoint</summary>",
        "",
        diagnostics_markdown(conditions),
        "",
        "</details>",
        "",
        "Training runs (from each run's metrics.jsonl):",
        "",
        *training_runs_table(mini),
    ]
    lines += ["", "Seconds are wall-clock on a 2-core virtual machine whose load was not controlled, so they "
              "compare loosely across runs; each eval pass scores the in-training held-out rows once.", ""]
    evals = [r for r in read_metrics_jsonl(mini / "online_v1" / "metrics.jsonl") if "eval/nll" in r]
    if evals:
        lines += [f"In-training held-out eval of the distillation run (`eval.held_out_examples` = "
                  f"{cfg['eval']['held_out_examples']} test rows, every {training['eval_steps']} steps; step 0 = "
                  "the base model):", "",
                  "| step | answer NLL | top-1 | KL(teacher ‖ model) | top-K MSE | ICL gap closed (NLL) | "
                  "ICL gap closed (KL) | s |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in evals:
            lines.append(f"| {r['step']} | {r['eval/nll']:.4f} | {r['eval/top1']:.4f} | {r['eval/kl']:.4f} | "
                         f"{r['eval/topk_mse']:.3f} | {r.get('eval/gap_closed_nll', float('nan')):.3f} | "
                         f"{r.get('eval/gap_closed_kl', float('nan')):.3f} | {r['eval/seconds']:.1f} |")
    if onpolicy is not None:
        lines += onpolicy_markdown(onpolicy, conditions, doc_dir)
    if mini_full is not None:
        lines += ["", *full_finetune_markdown(mini_full, mini)]
    lines += ["", f"Beside it, the paper's published table (Qwen3-1.7B, GSM8K test accuracy, best checkpoint of "
              f"each method; not measured here, from `{published}`):", "",
              main_table(load_many([published])["conditions"], rule="best")]
    return "\n".join(lines) + "\n"


def summary_markdown(mini: Path, onpolicy: Path | None, mini_full: Path | None, page: str) -> str:
    """The README's short version: one row per condition at its last checkpoint (the LoRA mini's runs and base
    rows, the on-policy runs, the full fine-tuning runs), the setting in one line, and a link to `page`."""
    diagnostics = load_diagnostics(mini / "diagnostics.json")
    conditions = dict(diagnostics["conditions"])
    if onpolicy is not None:
        conditions |= {c: labels for c, labels in load_diagnostics(onpolicy / "diagnostics.json")["conditions"].items()
                       if c not in conditions}
    if mini_full is not None:
        full_finetune_markdown(mini_full, mini)  # refuses a run that scored other rows or another model
        conditions |= full_finetune_runs(mini_full, load_diagnostics(mini_full / "diagnostics.json"))[1]
    cfg = yaml.safe_load((mini / "online_v1" / "run_config.yaml").read_text())
    training = cfg["training"]
    batch = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    return "\n".join([
        f"SmolLM2-135M-Instruct (`{diagnostics['model']}`) on CPU: {cfg['data']['max_train_examples']} GSM8K "
        f"train rows, {training['max_steps']} optimizer steps of batch {batch}; teacher-forced diagnostics on "
        f"{len(diagnostics['subset_indices'])} held-out GSM8K test rows, last checkpoint of each run (gap closed: "
        f"0 = the 0-shot base model, 1 = the 8-shot teacher). Every checkpoint, timings, settings and what it "
        f"does not show: [{page}]({page}).",
        "",
        diagnostics_markdown({c: dict([last_checkpoint(labels)]) for c, labels in conditions.items()},
                             SUMMARY_COLUMNS),
    ]) + "\n"


def icl_demo_markdown(folder: Path, doc_dir: Path = Path(".")) -> str:
    """docs/measured.md's make icl-demo section: settings, figure, both tables per task (per-seed counts, every
    named pair with its McNemar tests) and one generated sentence per pair, all from `folder`/study.json."""
    study = json.loads((folder / "study.json").read_text())
    settings = study["settings"]
    evaluation = settings["eval"]
    tasks = study["tasks"]
    first = next(iter(tasks.values()))
    lines = [
        f"`make icl-demo` (configs/studies/icl_demo.yaml): `{study['model']}` on CPU "
        f"(OMP_NUM_THREADS={settings['threads']} per launch), task{'s' if len(tasks) > 1 else ''} "
        f"{', '.join(f'`{t}`' for t in tasks)}, seeds {', '.join(map(str, first['seeds']))}. Every trained "
        f"run starts from the base model with the training overrides `{' '.join(settings['train_overrides'])}` "
        f"and is scored 0-shot (greedy, {evaluation['max_new_tokens']} new tokens, exact match of the first "
        f"line) on the same {first['n_items']} test items; the base rows are scored 0-shot and with 8 shots "
        f"drawn with each seed. Outputs: [{link(folder / 'study.json', doc_dir)}]"
        f"({link(folder / 'study.json', doc_dir)}).",
        "",
        f'<img src="{link(folder / "study.png", doc_dir)}" alt="make icl-demo: accuracy per condition" '
        'width="720">',
        "",
        study_markdown(tasks).rstrip("\n"),
        "",
        "What the pairs show (each sentence generated from the pair's paired bootstrap interval):",
        "",
    ]
    for task, summary in tasks.items():
        lines += [f"- `{task}`: {pair_reading(pair, summary['confidence'])}" for pair in summary["pairs"]]
    if (folder / "times.json").is_file():
        lines += ["", icl_demo_time(json.loads((folder / "times.json").read_text()), settings)]
    return "\n".join(lines) + "\n"


def icl_demo_time(times: dict, settings: dict) -> str:
    """The last invocation's wall time, from the study's times.json."""
    last = times["invocations"][-1]
    load = ", ".join(f"{x:.1f}" for x in last["load_average"])
    return (f"Time of the committed run (times.json, its last invocation): {last['wall_s']:.0f} s wall for "
            f"{len(last['launches'])} launches, {settings.get('jobs', 1)} at a time with "
            f"{settings['threads']} thread each ({last['cpu_s']:.0f} CPU s); load average at its end {load} "
            "(1, 5, 15 min) on a 2-core machine.")


def training_setting(overrides: list[str]) -> str:
    """The study's training overrides in words (rows, steps of batch, lr), or verbatim when one is not set."""
    values = dict(o.split("=", 1) for o in overrides if "=" in o)
    keys = ("data.max_train_examples", "training.max_steps", "training.per_device_train_batch_size",
            "training.gradient_accumulation_steps", "training.lr")
    if not all(k in values for k in keys):
        return f"training overrides `{' '.join(overrides)}`"
    rows, steps, batch, accumulation, lr = (values[k] for k in keys)
    return (f"{rows} train rows per seed, {steps} optimizer steps of batch {int(batch) * int(accumulation)}, "
            f"lr {lr}")


PROXY_NOTE = ("; beside it, the mean share of the ICL gap closed by the teacher-forced NLL of the gold answers on "
              "the same items (0 = the 0-shot base model, 1 = the 8-shot teacher)")


def icl_demo_summary_markdown(folder: Path, page: str, doc_dir: Path = Path(".")) -> str:
    """The README's make icl-demo block, short: the setting in one line, one table (a row per condition, a
    column per task: mean accuracy % and t-interval across seeds), the figure, how the intervals are made, and
    per task the key pairs (fewshot_distill.results.study.key_pairs: the study's first pair and every pair whose paired
    interval excludes 0) as generated sentences; everything else is on `page`. All from `folder`/study.json."""
    study = json.loads((folder / "study.json").read_text())
    settings = study["settings"]
    tasks = study["tasks"]
    first = next(iter(tasks.values()))
    level = round(100 * first["confidence"])
    study_yaml = f"configs/studies/{study['study']}.yaml"
    lines = [
        f"`make icl-demo` ([{study_yaml}]({link(Path(study_yaml), doc_dir)})): `{study['model']}` on "
        f"CPU, seeds {', '.join(map(str, first['seeds']))}; each trained run: "
        f"{training_setting(settings['train_overrides'])}; every run scored 0-shot (greedy, exact match of the "
        f"first line) on the same {first['n_items']} test items, the base model also with 8 shots. Test accuracy "
        f"%, mean over seeds [{level}% t-interval]{PROXY_NOTE if first.get('diagnostics') else ''}:",
        "",
        tasks_table_markdown(tasks),
        "",
        f'<img src="{link(folder / "study.png", doc_dir)}" alt="make icl-demo: accuracy per condition" '
        'width="720">',
        "",
        f"Intervals: {first['interval']}; pairs: {level}% paired bootstrap over seeds and items. Shown: per task, "
        f"the study's first pair and each pair whose interval excludes 0. Every pair, per-seed counts, McNemar "
        f"tests and settings: [{page}]({page}).",
        "",
    ]
    for task, summary in tasks.items():
        lines += [f"- `{task}`: {pair_reading(pair, summary['confidence'])}" for pair in key_pairs(summary)]
    return "\n".join(lines) + "\n"




def write_measured(mini: Path, published: Path, onpolicy: Path, mini_full: Path, doc: Path | None,
                   readme: Path | None) -> list[Path]:
    """mini/measured.md, and the full section in `doc` and the summary in `readme` between their markers
    (on-policy and full fine-tuning only where their folders hold a diagnostics.json). Returns what it wrote."""
    onpolicy = onpolicy if (onpolicy / "diagnostics.json").is_file() else None
    mini_full = mini_full if (mini_full / "diagnostics.json").is_file() else None

    def render(doc_dir: Path) -> str:  # links relative to the page that holds the section
        return measured_markdown(mini, published, onpolicy, mini_full, doc_dir)

    (mini / "measured.md").write_text(render(mini))
    written = [mini / "measured.md"]
    if doc:
        replace_between_markers(doc, START, END, render(doc.parent))
        written.append(doc)
    if readme:
        page = link(doc, readme.parent)
        replace_between_markers(readme, SUMMARY_START, SUMMARY_END, summary_markdown(mini, onpolicy, mini_full, page))
        written.append(readme)
    return written


def write_icl_demo(folder: Path, doc: Path, readme: Path) -> None:
    """The icl-demo blocks: the full one in `doc`, the README's short one (linking the full one) in `readme`."""
    replace_between_markers(doc, ICL_DEMO_DOC_START, ICL_DEMO_DOC_END, icl_demo_markdown(folder, doc.parent))
    replace_between_markers(readme, ICL_DEMO_START, ICL_DEMO_END,
                            icl_demo_summary_markdown(folder, link(doc, readme.parent), readme.parent))
