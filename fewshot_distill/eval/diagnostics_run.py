"""Wiring for scripts/eval_diagnostics.py: arguments -> held-out rows, teacher reference -> resumable run.

Same flags, target discovery and resumable results store as scripts/eval_checkpoints.py
(fewshot_distill/eval/evaluate.py, conditions.py, runner.py); the metrics are fewshot_distill/eval/diagnostics.py's.

    {output}.json             header + "kind": "diagnostics" + conditions.{name}.{label} = metrics
    {output stem}.rows.jsonl  one line per (condition, label, held-out row)

    exit_code = main(["--config", "configs/base.yaml", "--conditions", "base_0shot", "icl_8shot", "baseline",
                      "--output", "experiments/diagnostics.json", "model.name=models/smollm2-135m-instruct"])
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

import torch

from fewshot_distill.config import config_to_dict
from fewshot_distill.data.prompts import has_chat_template
from fewshot_distill.eval import diagnostics as diag
from fewshot_distill.data.subset import select_subset
from fewshot_distill.eval.evaluate import build_parser, evaluated_split, find_targets, parse_args
from fewshot_distill.eval.prompts import rows_fingerprint
from fewshot_distill.eval.runner import IncompatibleResultsError, ResultsStore, report
from fewshot_distill.eval.shot_source import load_shot_rows
from fewshot_distill.run_identity import icl_condition, ZERO_SHOT_CONDITION
from fewshot_distill.utils.attention_kernels import apply_attention_kernel_policy
from fewshot_distill.utils.run_info import collect_run_info

logger = logging.getLogger("fewshot_distill.diagnostics")

KIND = "diagnostics"
DEFAULT_ROWS = 64


def rows_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.rows.jsonl")


def diagnostics_parser(description: str | None):
    parser = build_parser(description, generation=False)
    parser.add_argument("--batch_size", type=int, default=4,
                        help="held-out rows per forward (memory: batch x answer length x vocabulary floats)")
    parser.set_defaults(n_samples=DEFAULT_ROWS)
    return parser


def summary_table(conditions: dict) -> str:
    lines = [f"{'condition':<18} {'label':<10} {'nll':>7} {'top1':>6} {'kl':>7} {'topk_mse':>9} "
             f"{'gap_nll':>8} {'gap_kl':>7}"]

    def fmt(value, width, digits):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for condition, labels in conditions.items():
        for label, m in labels.items():
            lines.append(f"{condition:<18} {label:<10} {fmt(m['nll'], 7, 4)} {fmt(m['top1'], 6, 3)} "
                         f"{fmt(m['kl'], 7, 4)} {fmt(m['topk_mse'], 9, 3)} {fmt(m['gap_closed_nll'], 8, 3)} "
                         f"{fmt(m['gap_closed_kl'], 7, 3)}")
    return "\n".join(lines)


def _score_with(window_lm, reference, top_k, alignment, device):
    totals, rows = diag.Totals(), []
    for batch, sums in diag.entry_rows(window_lm, reference, top_k, alignment, device):
        totals.add(sums)
        rows.append((batch, sums))
    return totals, rows


def main(argv: Sequence[str] | None = None, description: str | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO, force=True)
    args, cfg = parse_args(argv, description, parser=diagnostics_parser(description))
    if args.batch_size <= 0:
        raise SystemExit("error: --batch_size must be positive")
    started = time.time()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from fewshot_distill.data.examples import load_task_rows
    from fewshot_distill.models.student import AnswerWindowLM, load_base_model, load_tokenizer

    try:
        tokenizer = load_tokenizer(cfg.model.name)
        test_rows = load_task_rows(cfg.data, evaluated_split(cfg, args.split))
        train_rows, shot_source = load_shot_rows(cfg.data, args.shot_path)  # the teacher's shots
    except (FileNotFoundError, ValueError) as error:  # ResourceError, DataFileError, InvalidRowsError among them
        print(f"error: {error}", file=sys.stderr)
        return 2
    seed, n_shots = cfg.training.seed, cfg.data.num_fewshot_examples
    top_k, alignment = cfg.eval.mse_top_k, cfg.distillation.alignment
    indices = select_subset(len(test_rows), args.n_samples, seed if args.subset_seed is None else args.subset_seed)
    targets, problems = find_targets(args, cfg)
    if not targets:
        return 1

    header = {
        "kind": KIND,
        "config": config_to_dict(cfg),
        "model": cfg.model.name,
        "task": cfg.data.task,
        "split": args.split,
        "subset_indices": indices,
        "sampling": {"teacher_forced": True},
        "prompting": {"teacher_shots": n_shots, "shot_seed": seed, "shots_from": shot_source,
                      "shot_sampling": cfg.data.shot_sampling,
                      "chat_template": has_chat_template(tokenizer)},
        "data_fingerprint": rows_fingerprint(test_rows) + ":" + rows_fingerprint(train_rows),
        "engine": {"dtype": "float32", "mse_top_k": top_k, "alignment": alignment},
        "run_info": collect_run_info(attention_kernels=apply_attention_kernel_policy(
            "cuda" if torch.cuda.is_available() else "cpu", cfg.model.cudnn_sdpa)),
    }
    try:
        store = ResultsStore(args.output, header, overwrite=args.overwrite, rows_path=rows_path(args.output))
    except IncompatibleResultsError as error:
        logger.error("%s", error)
        return 2
    pending = [t for t in targets if not store.is_done(*t.key)]
    for target in targets:
        if target not in pending:
            logger.info("%s/%s: already in %s, skipped", target.condition, target.label, store.output)

    failures = []
    if pending:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        base = load_base_model(cfg.model.name, bf16=False, attn_implementation=cfg.model.attn_implementation)
        base.to(device).eval()
        base_lm = AnswerWindowLM(base)
        batches = diag.build_heldout_batches(tokenizer, test_rows, indices, cfg.data, seed, args.batch_size,
                                             shot_rows=train_rows)
        t0 = time.time()
        reference = diag.build_reference(base_lm, batches, top_k, alignment, device)
        logger.info("teacher reference (%d-shot, %d rows): %.1f s, %.1f MB kept", n_shots, len(indices),
                    time.time() - t0, reference.nbytes() / 2**20)
        # The base rows are the reference itself: base_0shot, and icl_{k}shot = the teacher (KL 0).
        fixed = {ZERO_SHOT_CONDITION: (reference.base0, reference.base0_rows),
                 icl_condition(n_shots): (reference.teacher, reference.teacher_rows)}
        for target in pending:
            t0 = time.time()
            try:
                if target.condition in fixed:
                    totals, row_sums = fixed[target.condition]
                    scored = list(zip(reference.batches, row_sums))
                elif target.adapter_path:
                    peft_model = PeftModel.from_pretrained(base, target.adapter_path).eval()
                    try:
                        totals, scored = _score_with(AnswerWindowLM(peft_model), reference, top_k, alignment, device)
                    finally:
                        base = peft_model.unload()  # the LoRA layers out again: the plain base model
                else:
                    model = AutoModelForCausalLM.from_pretrained(target.model_path, dtype=torch.float32)
                    totals, scored = _score_with(AnswerWindowLM(model.to(device).eval()),
                                                 reference, top_k, alignment, device)
            except Exception as error:  # one bad checkpoint must not cost the others' results
                logger.error("%s/%s failed:\n%s", target.condition, target.label, traceback.format_exc())
                failures.append((target, f"{type(error).__name__}: {error}"))
                continue
            metrics = diag.summarize(totals, reference.base0, reference.teacher)
            metrics["seconds"] = round(time.time() - t0, 2)
            records = [r for batch, sums in scored
                       for r in diag.per_row_records(target.condition, target.label, batch, sums)]
            store.record(target, metrics, records)
            logger.info("%s/%s: nll %.4f kl %.4f gap_closed_nll %s (%.1f s)", target.condition, target.label,
                        metrics["nll"], metrics["kl"], metrics["gap_closed_nll"], metrics["seconds"])

    exit_code = report(store, problems, failures, table=summary_table, rows_name="rows")
    logger.info("done in %.1f s", time.time() - started)
    return exit_code
