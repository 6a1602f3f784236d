"""In-training held-out diagnostics: `eval/*` scalars every `training.eval_steps` optimizer steps.

The loop calls `build_heldout_evaluator(run)` once and the evaluator at step 0 and every eval_steps
steps. A fixed seeded set of `eval.held_out_examples` test rows is scored teacher-forced on the gold
answers (fewshot_distill/eval/diagnostics.py): NLL, top-1, KL to the k-shot teacher, top-K MSE and the ICL gap
closed. The teacher's window logits (adapter disabled, k shots) and the 0-shot base model's totals
are computed once at the start and reused.

DDP: the rows are sharded across ranks (row i on rank i % world_size); each rank runs its shard
through its own unwrapped model copy (no collective inside the forward), then the sums are
all-reduced, so every rank holds the same numbers and the main process logs them.
"""

from __future__ import annotations

import logging
import time


from fewshot_distill.eval import diagnostics as diag

logger = logging.getLogger("fewshot_distill")


class HeldOutEvaluator:
    def __init__(self, run, rows: list[dict], indices: list[int], shot_rows: list[dict]):
        cfg, accelerator = run.cfg, run.accelerator
        self.accelerator = accelerator
        self.top_k, self.alignment = cfg.eval.mse_top_k, cfg.distillation.alignment
        self.window_lm = accelerator.unwrap_model(run.model)
        shard = indices[accelerator.process_index::accelerator.num_processes]
        started = time.perf_counter()
        batches = (diag.build_heldout_batches(run.tokenizer, rows, shard, cfg.data, cfg.training.seed,
                                              cfg.training.per_device_train_batch_size, shot_rows)
                   if shard else [])
        was_training = self.window_lm.training
        self.window_lm.eval()
        with accelerator.autocast():
            self.reference = diag.build_reference(self.window_lm, batches, self.top_k, self.alignment,
                                                  accelerator.device)
        self.window_lm.train(was_training)
        self.teacher = self._all_reduce(self.reference.teacher)
        self.base0 = self._all_reduce(self.reference.base0)
        self.reference_seconds = time.perf_counter() - started
        logger.info("held-out eval: %d test rows (%d on this rank), teacher cache %.1f MB, set up in %.1f s; "
                    "NLL 0-shot %.4f, %d-shot teacher %.4f", len(indices), len(shard),
                    self.reference.nbytes() / 2**20, self.reference_seconds, self.base0.mean("nll"),
                    cfg.data.num_fewshot_examples, self.teacher.mean("nll"))

    def _all_reduce(self, totals: diag.Totals) -> diag.Totals:
        vector = totals.as_vector().to(self.accelerator.device)
        return diag.Totals.from_vector(self.accelerator.reduce(vector, reduction="sum").cpu())

    def __call__(self) -> dict[str, float]:
        """eval/* scalars of the model as it is now (dropout off during the pass)."""
        started = time.perf_counter()
        was_training = self.window_lm.training
        self.window_lm.eval()
        local = diag.Totals()
        with self.accelerator.autocast():
            for _, sums in diag.entry_rows(self.window_lm, self.reference, self.top_k, self.alignment,
                                           self.accelerator.device):
                local.add(sums)
        self.window_lm.train(was_training)
        metrics = diag.summarize(self._all_reduce(local), self.base0, self.teacher)
        scalars = {f"eval/{key}": float(value) for key, value in metrics.items()
                   if key not in ("tokens", "rows") and value is not None}
        scalars["eval/seconds"] = time.perf_counter() - started
        if self.reference_seconds is not None:  # the one-off teacher/base-0 set-up, logged with the first pass
            scalars["eval/setup_seconds"] = self.reference_seconds
            self.reference_seconds = None
        return scalars


def build_heldout_evaluator(run) -> HeldOutEvaluator | None:
    """The evaluator, or None when eval.held_out_examples is 0 or no eval step falls within the run."""
    cfg = run.cfg
    if cfg.eval.held_out_examples == 0 or cfg.training.eval_steps > cfg.training.max_steps:
        return None
    from fewshot_distill.data.examples import load_task_rows
    from fewshot_distill.data.subset import select_subset

    rows = load_task_rows(cfg.data, cfg.data.test_split)
    indices = select_subset(len(rows), cfg.eval.held_out_examples, cfg.training.seed)
    # The teacher's shots come from the training split, as in the icl_{k}shot evaluation row.
    return HeldOutEvaluator(run, rows, indices, load_task_rows(cfg.data, cfg.data.train_split))
