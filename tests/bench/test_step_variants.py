"""The step benchmark's variant table (fewshot_distill/bench/step_variants.py): one row per variant, read by the
worker and the CLI alike."""

from __future__ import annotations

from fewshot_distill.bench.step_bench import parse_args
from fewshot_distill.bench.step_variants import ONPOLICY_STEP_VARIANTS, VARIANTS, variants_help

STEP_KINDS = {"sft", "reference", "distill", "distill_cached", "onpolicy", "onpolicy_step"}


def test_every_row_names_a_step_the_worker_runs_and_only_onpolicy_steps_name_a_sampler():
    assert {v.step for v in VARIANTS.values()} <= STEP_KINDS
    assert all((v.sampling is not None) == (v.step == "onpolicy_step") for v in VARIANTS.values())
    assert set(ONPOLICY_STEP_VARIANTS) == {n for n, v in VARIANTS.items() if v.step == "onpolicy_step"}
    assert {v.batches for v in VARIANTS.values()} <= {"batches", "grouped_batches", "fixed_batches"}


def test_the_cli_lists_and_accepts_exactly_the_table():
    help_text = variants_help()
    assert all(f"  {name}" in help_text for name in VARIANTS)
    assert parse_args(["--variants", ",".join(VARIANTS)]).variants.split(",") == list(VARIANTS)
