"""The step benchmark's FLOP model (fewshot_distill/bench/flops.py) on hand-computed shapes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fewshot_distill.bench.flops import forward_flops, whole_run_flops
from fewshot_distill.bench.step_data import PAPER_BATCH, PAPER_STEPS

CFG = SimpleNamespace(hidden_size=4, head_dim=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=8, num_hidden_layers=3, vocab_size=10)


def test_forward_flops_by_hand():
    # per layer: projections 4*2*(2*2 + 2*1) = 48 params, MLP 3*4*8 = 96 params, 2 FLOPs per param per token;
    # attention 2 * B * heads * head_dim * T * (T + 2 * past); LM head 2 * B * positions * hidden * vocab.
    batch, seq, positions, past = 2, 5, 3, 4
    body = 3 * (2 * batch * seq * (48 + 96) + 2 * batch * 2 * 2 * seq * (seq + 2 * past))
    assert forward_flops(CFG, batch, seq, positions, past) == body + 2 * batch * positions * 4 * 10


def test_whole_run_with_the_cache_pays_the_teacher_once_per_unique_example():
    flops = {"sft": 2.0, "reference": 6.0, "ours": 3.0}
    runs = whole_run_flops(flops, batch_size=2, n_unique=PAPER_STEPS * PAPER_BATCH // 4)
    assert runs["reference_over_sft"] == 3.0 and runs["ours_uncached_over_sft"] == 1.5
    assert runs["ours_cached_over_sft"] == pytest.approx(0.25 * 1.5 + 0.75 * 1.0)
